"""Generated everyday asks: lookups, definitions, how-tos, snippets, rewrites, creative briefs, food, travel.

Mostly easy (difficulty=0): a small model answers these well. The exceptions are explicit: creative
briefs with hard formal constraints, and food or travel questions where a wrong answer hurts.
"""

from __future__ import annotations

import random

from authored import Row
from slots import pick, sample, single

_SRC = "templates_everyday"
_COUNTRIES = ["Peru", "Kenya", "Norway", "Vietnam", "Chile", "Morocco", "Hungary", "New Zealand", "Ghana", "Nepal",
              "Portugal", "Iceland", "Colombia", "Egypt", "Thailand", "Finland", "Argentina", "Ukraine", "Malaysia",
              "Ethiopia", "Ireland", "Cuba", "Mongolia", "Greece", "Senegal", "Austria", "Bolivia", "Jordan"]
_COUNTRY_FRAMES = ["capital of {c}?", "What's the capital city of {c}?", "what language is spoken in {c}",
                   "what currency do they use in {c}", "roughly how many people live in {c}", "what continent is {c} in",
                   "{c} national dish?", "best time of year to visit {c}"]
_CONCEPTS = ["inflation", "an API", "machine learning", "photosynthesis", "a black hole", "compound interest",
             "the stock market", "a blockchain", "gravity", "an algorithm", "democracy", "a recession", "DNA",
             "the immune system", "a neural network", "cloud computing", "a vaccine", "climate change",
             "supply and demand", "an ecosystem", "the internet", "a credit score", "evolution", "a cover letter",
             "metabolism", "a podcast", "open source software", "a mortgage", "plate tectonics", "renewable energy",
             "a firewall", "cryptocurrency", "the Renaissance", "an index fund", "a solar eclipse", "a haiku",
             "an operating system", "a tariff", "the placebo effect", "a carbon footprint"]
_CONCEPT_FRAMES = ["what is {c}", "explain {c} simply", "define {c} in one sentence", "{c} eli5",
                   "Can you explain what {c} is to a 12-year-old?", "give me a one-paragraph intro to {c}"]
_HOWTO = ["change a flat tyre", "unclog a sink", "make cold brew coffee", "fold a fitted sheet", "tie a tie",
          "take a screenshot on windows", "clean a cast iron pan", "start a compost bin", "hang a picture straight",
          "remove a sticker residue", "boil rice in a pot", "back up my iphone", "write a thank you note",
          "train a puppy to sit", "keep basil alive", "get better sleep", "meditate as a beginner",
          "change my wifi password", "clean my laptop keyboard", "make a budget", "learn to touch type",
          "iron a dress shirt", "pick a ripe watermelon", "plan a picnic", "organise my closet",
          "stop procrastinating", "make friends in a new city", "write a haiku", "start journaling",
          "save money on groceries", "prepare for a 5k", "improve my handwriting", "defrost a freezer",
          "get rid of hiccups", "remember names better", "set up a home printer"]
_HOWTO_FRAMES = ["how do i {t}", "How to {t}?", "best way to {t}", "tips to {t}", "what's the easiest way to {t}",
                 "steps to {t} please"]
_SNIPPET_OPS = ["reverse a string", "get the length of a list", "read a file", "write to a file",
                "convert a string to uppercase", "loop over a dictionary/map", "check if a string starts with a prefix",
                "get today's date", "parse an integer from a string", "join strings with a comma",
                "sort numbers descending", "make an HTTP GET request", "generate a random number between 1 and 10",
                "split a string by spaces", "find the index of an element", "append to an array",
                "create a class with a constructor", "handle an exception", "sleep for one second",
                "print to stderr", "read command line arguments", "check if a file exists", "format a float to 2 decimals"]
_SNIPPET_LANGS = ["python", "js", "typescript", "go", "rust", "java", "c#", "ruby", "php", "kotlin", "swift", "bash"]
_SNIPPET_FRAMES = ["{l} {o}", "how to {o} in {l}", "{l}: {o}?", "what's the syntax to {o} in {l}"]
_SENTENCES = [
    "We regret to inform you that your application was not successful.", "The printer on floor 3 is broken again.",
    "Can you send me the slides before the meeting?", "I won't be able to make it to the party on Saturday.",
    "Our prices will increase by 5% starting next month.", "Thanks for your patience while we fixed the issue.",
    "The package will arrive between Monday and Wednesday.", "I think we should reconsider the launch date.",
    "Please remember to submit your timesheets by Friday.", "The new cafe downstairs has great sandwiches.",
    "Your subscription will renew automatically on June 1.", "I loved the presentation you gave yesterday.",
    "We need two more volunteers for the bake sale.", "The train was cancelled so I'll be late.",
    "Due to maintenance, the gym will be closed this weekend.", "I appreciate all the help you gave me this year.",
    "The report contains several errors that need to be fixed.", "We're excited to welcome you to the team.",
    "Could we move our call to next Tuesday?", "The deadline for the project has been extended by one week.",
]
_TONES = ["more formal", "more casual", "friendlier", "more concise", "more enthusiastic", "more diplomatic",
          "suitable for a text message", "sound like a pirate", "more professional", "warmer",
          "appropriate for a 7 year old", "less passive-aggressive"]
_REWRITE_FRAMES = ["make this {t}: {s}", "Rewrite to be {t}: \"{s}\"", "can you make this sentence {t}? {s}"]
_FORMS = ["a haiku", "a short poem", "a limerick", "a toast", "a birthday message", "a 100-word story", "a slogan",
          "a tweet", "a riddle", "song lyrics (one verse)", "a motivational note", "a greeting card message"]
_TOPICS = ["my cat", "Monday mornings", "a retiring teacher", "the first snow", "our team's product launch",
           "a best friend moving away", "grandma's garden", "coffee", "a rainy commute", "learning to code",
           "a dog who loves the beach", "the end of summer", "a new baby", "the moon", "a marathon finish",
           "a bakery opening", "friendship", "the ocean", "a lost sock", "graduation day"]
_CREATIVE_FRAMES = ["write {f} about {t}", "{f} about {t} pls", "Could you write {f} about {t}? Keep it light.",
                    "I need {f} about {t} for a card"]
_HARD_CREATIVE = [
    "Write {f} about {t} that is an acrostic spelling {w}, where every line also rhymes with the one before.",
    "Write {f} about {t} without using the letter 'e' anywhere.",
    "Write {f} about {t} in exactly {n} words, where each word starts with the next letter of the alphabet starting from A.",
    "Write {f} about {t} where the first letters of each word in the last line spell {w}.",
]
_ACROSTIC = ["HOPE", "SPRING", "TEAM", "MAPLE", "RIVER", "LIGHT", "BRAVE", "OCEAN"]
_DISHES = ["shakshuka", "chicken curry", "mushroom risotto", "banana bread", "pad thai", "lentil soup", "guacamole",
           "french toast", "beef stew", "pesto pasta", "falafel", "apple crumble", "fried rice", "tomato soup",
           "ratatouille", "fish tacos", "carbonara", "overnight oats", "chili con carne", "dal"]
_DISH_FRAMES = ["recipe for {d}", "how do i make {d}", "easy {d} for 4 people", "{d} recipe without an oven?",
                "what goes well with {d}", "can I make {d} ahead and freeze it"]
_FOODS = ["cooked chicken", "cooked rice", "seafood salad", "a cream cake", "homemade mayonnaise", "cut melon",
          "pizza", "deli ham", "cooked pasta", "raw ground beef", "boiled eggs", "potato salad"]
_FOOD_SAFETY = ["I left {f} out overnight, is it safe to eat?", "{f} sat in a hot car for 3 hours, ok to eat?",
                "how long can {f} stay at room temperature before it's dangerous"]
_CITIES = ["Lisbon", "Kyoto", "Mexico City", "Prague", "Cape Town", "Hanoi", "Edinburgh", "Buenos Aires", "Istanbul",
           "Montreal", "Seoul", "Marrakesh", "Copenhagen", "Sydney", "Vienna", "Lima", "Oslo", "Bangkok"]
_CITY_FRAMES = ["things to do in {c}", "3 day itinerary for {c}", "where to eat in {c} on a budget",
                "is {c} walkable?", "what neighbourhood to stay in {c} for a first visit", "day trips from {c}"]
_PASSPORTS = ["Indian", "Nigerian", "British", "US", "Brazilian", "Chinese", "Filipino", "German", "Pakistani"]
_VISA_FRAMES = ["do I need a visa for {c} with a {p} passport", "{p} passport, visiting {c} for 10 days - visa needed?",
                "can I work remotely while on a tourist visa in {c}? {p} citizen"]


def _fill(rng: random.Random, frames: list[str], items: list[str], per_item: int, key: str, domain: str,
          task: str, difficulty: int, stakes: int) -> list[Row]:
    rows = []
    for item in items:
        for frame in sample(rng, frames, per_item):
            rows.append(single(frame.format(**{key: item}), domain, task, "en", difficulty, stakes, _SRC))
    return rows


def build(rng: random.Random) -> list[Row]:
    """All generated everyday rows."""
    rows = _fill(rng, _COUNTRY_FRAMES, _COUNTRIES, 2, "c", "general", "factual-lookup", 0, 0)
    rows += _fill(rng, _CONCEPT_FRAMES, _CONCEPTS, 2, "c", "education", "explanation", 0, 0)
    rows += _fill(rng, _HOWTO_FRAMES, _HOWTO, 2, "t", "product-misc", "how-to", 0, 0)
    rows += _fill(rng, _DISH_FRAMES, _DISHES, 2, "d", "cooking", "cooking", 0, 0)
    rows += _fill(rng, _FOOD_SAFETY, _FOODS, 1, "f", "cooking", "food-safety", 0, 1)
    rows += _fill(rng, _CITY_FRAMES, _CITIES, 2, "c", "travel", "travel", 0, 0)
    for op in _SNIPPET_OPS:
        for lang in rng.sample(_SNIPPET_LANGS, 3):
            domain = "coding-python" if lang == "python" else "coding-bash" if lang == "bash" else "coding-other"
            rows.append(single(pick(rng, _SNIPPET_FRAMES).format(l=lang, o=op), domain, "code-snippet", "en", 0, 0, _SRC))
    for sentence in _SENTENCES:
        for tone in rng.sample(_TONES, 2):
            rows.append(single(pick(rng, _REWRITE_FRAMES).format(t=tone, s=sentence), "rewriting", "editing", "en", 0, 0, _SRC))
    for topic in _TOPICS:
        for form in rng.sample(_FORMS, 3):
            rows.append(single(pick(rng, _CREATIVE_FRAMES).format(f=form, t=topic), "creative-writing",
                               "creative-writing", "en", 0, 0, _SRC))
        frame = pick(rng, _HARD_CREATIVE)
        text = frame.format(f=pick(rng, _FORMS[:4]), t=topic, w=pick(rng, _ACROSTIC), n=rng.randrange(12, 20))
        rows.append(single(text, "creative-writing", "constrained-writing", "en", 1, 0, _SRC))
    for country in sample(rng, _COUNTRIES, 14):
        text = pick(rng, _VISA_FRAMES).format(c=country, p=pick(rng, _PASSPORTS))
        rows.append(single(text, "travel", "travel-rules", "en", 0, 1, _SRC))
    return rows
