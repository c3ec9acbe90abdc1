"""Generated language tasks: translation, rewriting and summarisation of pasted text.

Long pasted text with a simple instruction is easy (summarise, fix typos); the same text with an
exacting instruction (keep every figure, legal register, idioms) is hard. Translating contracts or
patient instructions is high-stakes whatever the length.
"""

from __future__ import annotations

import random

from authored import Row
from slots import pick, sample, single

_SRC = "templates_language"
_TARGETS = ["French", "German", "Spanish", "Italian", "Portuguese", "Japanese", "Chinese", "Dutch", "Polish",
            "Korean", "Turkish", "Arabic"]
_SIMPLE_PHRASES = [
    "Where is the nearest pharmacy?", "I would like to book a table for two at eight.", "The meeting is moved to Thursday.",
    "Thank you for your help yesterday.", "How much does this cost?", "My flight was delayed by three hours.",
    "Happy birthday, I hope you have a wonderful day!", "Please close the door when you leave.",
    "Can I pay by card?", "We are out of milk, can you buy some on the way home?", "The museum is closed on Mondays.",
    "I'm allergic to peanuts.", "Our office will be closed for the holidays.", "See you next week!",
]
_IDIOMS = [
    "It's raining cats and dogs, so let's not beat around the bush and call it a day.",
    "He really spilled the beans, and now the ball is in their court.",
    "Break a leg tonight - and don't bite off more than you can chew!",
    "That ship has sailed; we'll have to cross that bridge when we come to it.",
    "She's been burning the candle at both ends, and it finally came home to roost.",
    "Let's not throw the baby out with the bathwater over one bad quarter.",
    "Our new CEO is a breath of fresh air, but he's still learning the ropes.",
    "It's not rocket science, but the devil is in the details.",
]
_HIGH_STAKES_TEXT = [
    "The Tenant shall indemnify and hold harmless the Landlord against all claims arising from the Tenant's use of the premises, save for claims arising from the Landlord's gross negligence.",
    "Take one tablet twice daily with food. Do not exceed four tablets in 24 hours. Stop taking and seek medical help immediately if you develop a rash or swelling of the face.",
    "This Agreement shall be governed by the laws of England and Wales, and the parties submit to the exclusive jurisdiction of its courts.",
    "Warning: disconnect the mains supply before removing the cover. Capacitors may retain a dangerous charge for up to five minutes.",
    "The Borrower may prepay the loan in whole or in part, subject to a fee of 2% of the amount prepaid during the first 36 months.",
    "Patients with a penicillin allergy must not receive this medication. Inform your doctor if you are pregnant or breastfeeding.",
]
_PARAGRAPHS = [
    "Our team migrated the billing service to the new cluster last week. The migration took two days longer than planned because of an unexpected dependency on the legacy reporting database. No customer data was lost, but invoices for 312 customers were delayed by up to 48 hours. We have since added the reporting database to the migration checklist and will run a dry run before the next migration in March.",
    "The community garden will open for the season on April 6. Plots cost 25 dollars per year and include access to water and shared tools. New members must attend a short orientation on the first Saturday of the month. Please note that the compost area is being moved to the north corner, and the old bins will be removed by the city at the end of April.",
    "In the third quarter, revenue grew 8% year over year to 4.2 million, driven mainly by the enterprise segment, while small business revenue was flat. Gross margin improved from 61% to 64% thanks to lower hosting costs. Operating expenses rose 12% because of new hires in sales. The company expects fourth-quarter revenue between 4.4 and 4.6 million.",
    "Dear parents, the school trip to the science museum is on Friday, 14 October. Buses leave at 8:30 and return by 15:00. Children should bring a packed lunch and a water bottle; no glass bottles, please. The cost is 12 pounds, payable through the school app by Monday. If your child needs medication during the day, please contact the office.",
    "The study followed 2,400 adults for six years and found that those who walked at least 7,000 steps a day had a lower rate of heart problems than those who walked fewer than 4,000. The authors caution that the study was observational, that step counts were measured for only one week at the start, and that people who walk more may differ in other ways.",
    "After three years of planning, the town council approved the new bike lane on Harbour Road by a vote of 7 to 4. Construction begins in June and should finish by September. Parking on the east side of the road will be removed, and the council promised 40 new spaces in the lot behind the library. Shop owners raised concerns about deliveries during construction.",
    "Version 3.2 of the app introduces offline mode, which lets users read saved articles without a connection. We also fixed a bug that caused the app to crash when rotating the screen on some tablets, and improved startup time by about 30%. Support for Android 8 ends with this release; those users will keep version 3.1.",
    "Hi all, quick update on the office move. The movers arrive on Thursday at 7am. Please pack your desk into the provided boxes by Wednesday evening and label each box with your name and new desk number. IT will disconnect monitors on Wednesday at 5pm. The new office opens Monday; the kitchen won't be ready until the following week.",
    "The recipe serves four. Brown 500 g of minced beef with one chopped onion, add two cloves of garlic, a tin of tomatoes and a tablespoon of tomato paste, and simmer for 30 minutes. Season with salt, pepper and oregano. Serve over spaghetti with grated parmesan. Leftovers keep in the fridge for three days.",
    "The hotel confirms your booking for 3 nights from 12 to 15 May in a double room with breakfast. Check-in is from 15:00 and check-out by 11:00. Free cancellation is possible until 48 hours before arrival; after that the first night is charged. Parking costs 15 euros per day and must be reserved in advance.",
]
_EASY_TEXT_TASKS = ["Summarise this in one sentence:", "tl;dr:", "Give me 3 bullet points from this:",
                    "Rewrite this in a more casual tone:", "What is the main point of this text?",
                    "Make this shorter, max 40 words:", "Translate this into Spanish:"]
_HARD_TEXT_TASKS = [
    "Extract every number, date and amount from this text into a table with what each refers to, then list any that seem inconsistent:",
    "Rewrite this for a hostile audience that will look for any ambiguity, so that nothing can be misread; keep every fact and mark what you changed:",
    "Write five exam questions whose answers require combining at least two facts from this text, with answers:",
    "Translate this into German and French, keeping names, figures and dates exactly, and note any phrase that has no clean equivalent:",
]


def _translation_rows(rng: random.Random) -> list[Row]:
    rows = []
    for phrase in _SIMPLE_PHRASES:
        for target in sample(rng, _TARGETS, 2):
            text = pick(rng, ["translate to {t}: {p}", "How do you say '{p}' in {t}?", "{t} translation please: {p}"])
            rows.append(single(text.format(t=target, p=phrase), "translation", "translation", "en", 0, 0, _SRC))
    for idiom in _IDIOMS:
        for target in sample(rng, _TARGETS, 2):
            text = pick(rng, ["Translate into {t}, keeping the idiomatic meaning rather than word for word: {p}",
                              "how would a native {t} speaker say this naturally? \"{p}\""])
            rows.append(single(text.format(t=target, p=idiom), "translation", "translation", "en", 1, 0, _SRC))
    for passage in _HIGH_STAKES_TEXT:
        for target in sample(rng, _TARGETS, 2):
            text = pick(rng, ["Translate this into {t} exactly, it goes into the official document: {p}",
                              "Please translate for my mother who only reads {t}: {p}"])
            rows.append(single(text.format(t=target, p=passage), "translation", "translation", "en", 1, 1, _SRC))
    return rows


def _pasted_text_rows(rng: random.Random) -> list[Row]:
    rows = []
    for paragraph in _PARAGRAPHS:
        task = pick(rng, _EASY_TEXT_TASKS)
        rows.append(single(f"{task}\n\n{paragraph}", "summarisation", "summarisation", "en", 0, 0, _SRC))
        hard = pick(rng, _HARD_TEXT_TASKS)
        rows.append(single(f"{paragraph}\n\n{hard}", "summarisation", "text-analysis", "en", 1, 0, _SRC))
    return rows


def build(rng: random.Random) -> list[Row]:
    """All generated language-task rows."""
    return _translation_rows(rng) + _pasted_text_rows(rng)
