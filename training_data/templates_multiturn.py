"""Generated multi-turn rows: a short exchange, then a follow-up whose labels depend on the context.

The same follow-up ("and for a 6 year old?", "what about on prod?") appears after harmless and after
high-stakes exchanges, so a classifier can only label it correctly by reading the earlier turns.
"""

from __future__ import annotations

import random

from authored import Row
from slots import conversation, pick

_SRC = "templates_multiturn"
# kind -> list of (user, assistant, domain, difficulty, stakes)
_CONTEXTS: dict[str, list[tuple[str, str, str, int, int]]] = {
    "dose": [
        ("what's the dose of naproxen for period pain", "Adults: 500 mg first, then 250 mg every 6-8 hours, max 1,250 mg on day one.", "medical", 0, 1),
        ("how much vitamin D should I take in winter", "Most adults: 10-25 micrograms (400-1,000 IU) a day.", "medical", 0, 1),
        ("dose of pseudoephedrine for a blocked nose", "60 mg every 4-6 hours, max 240 mg a day, if you have no heart or blood pressure issues.", "medical", 0, 1),
        ("how much ibuprofen can I take for a toothache", "Adults: 200-400 mg every 4-6 hours, max 1,200 mg a day without medical advice.", "medical", 0, 1),
        ("what's the dose of cetirizine for hay fever", "Adults usually take 10 mg once a day.", "medical", 0, 1),
        ("how much melatonin should I take to sleep", "Start low, 0.5-3 mg about an hour before bed.", "medical", 0, 1),
        ("dose of loperamide for diarrhoea?", "4 mg first, then 2 mg after each loose stool, max 8 mg a day over the counter.", "medical", 0, 1),
        ("how much paracetamol for a fever", "Adults: 500 mg-1 g every 4-6 hours, max 4 g in 24 hours.", "medical", 0, 1),
        ("what's the usual dose of diphenhydramine for allergies", "25-50 mg every 4-6 hours for adults, max 300 mg a day.", "medical", 0, 1),
    ],
    "activity": [
        ("good snacks for a road trip", "Trail mix, cheese sticks, apple slices, crackers and lots of water.", "cooking", 0, 0),
        ("what should I watch tonight", "Try a comfort classic like 'Paddington 2' or a thriller like 'Knives Out'.", "chit-chat", 0, 0),
        ("easy crafts with paper plates", "Masks, tambourines with rice inside, sun-catchers, or animal faces.", "education", 0, 0),
        ("fun things to do on a rainy afternoon", "Board games, a blanket fort, baking cookies, or a movie marathon.", "chit-chat", 0, 0),
        ("ideas for a birthday party theme", "Space adventure, pirates, a dinosaur dig, or a superhero training camp.", "planning", 0, 0),
        ("what's a good book to read on holiday", "Try 'The Thursday Murder Club' for something light or 'Circe' for mythology.", "chit-chat", 0, 0),
        ("suggest a weekend hobby", "Sketching, bouldering, sourdough baking or birdwatching.", "chit-chat", 0, 0),
        ("recommend a board game for 4 players", "Ticket to Ride, Carcassonne, or Codenames.", "chit-chat", 0, 0),
    ],
    "hazard": [
        ("how do I descale my kettle", "Boil a mix of half water, half white vinegar, leave 20 minutes, then rinse and boil fresh water twice.", "safety", 0, 1),
        ("how do I clean my oven", "Use an oven cleaner with gloves and ventilation, or a baking soda paste overnight.", "safety", 0, 1),
        ("how do I replace a ceiling light", "Switch off the circuit at the breaker, test it's dead, then swap the fixture matching wires.", "safety", 0, 1),
        ("how do I clean the mould off my shower grout", "Scrub with a diluted bleach solution, rinse well and ventilate.", "safety", 0, 1),
        ("can I use a space heater in my bedroom", "Yes, if it has tip-over and overheat shutoff, is kept 1 m from anything flammable and plugged into the wall.", "safety", 0, 1),
        ("how do I get rid of wasps in the shed", "Spray a wasp foam at dusk from a distance, or call pest control for large nests.", "safety", 0, 1),
        ("how do I jump start my car", "Connect red to both positive terminals, black to the good battery's negative and then to bare metal on the dead car.", "safety", 0, 1),
    ],
    "code": [
        ("py sort list of dicts by key 'age'", "sorted(people, key=lambda p: p['age'])", "coding-python", 0, 0),
        ("js: sum an array", "arr.reduce((a, b) => a + b, 0)", "coding-js", 0, 0),
        ("go: read an env var with a default", "v := os.Getenv(\"X\"); if v == \"\" { v = \"default\" }", "coding-go", 0, 0),
        ("sql: count users per country", "SELECT country, COUNT(*) FROM users GROUP BY country;", "coding-sql", 0, 0),
        ("python function to download a file", "Use requests.get(url, stream=True) and write chunks to a file.", "coding-python", 0, 0),
        ("rust: read a file to string", "let s = std::fs::read_to_string(\"in.txt\")?;", "coding-rust", 0, 0),
    ],
    "ops": [
        ("how do I delete a git branch", "git branch -d name locally; git push origin --delete name on the remote.", "devops", 0, 0),
        ("how do I empty a postgres table", "TRUNCATE TABLE t; is fastest; DELETE FROM t; if you need triggers.", "devops", 0, 0),
        ("how to scale a deployment to zero in kubernetes", "kubectl scale deployment/app --replicas=0", "devops", 0, 0),
        ("how do I delete old log files on linux", "find /var/log/myapp -name '*.log' -mtime +30 -delete", "devops", 0, 0),
        ("how do I restart a systemd service", "sudo systemctl restart myservice", "devops", 0, 0),
        ("how to clear the redis cache", "Run FLUSHDB for the current database or FLUSHALL for all.", "devops", 0, 0),
        ("how do I remove unused docker images", "docker image prune -a removes images not used by any container.", "devops", 0, 0),
        ("how to drop a column in postgres", "ALTER TABLE t DROP COLUMN c;", "devops", 0, 0),
    ],
    "law": [
        ("can my employer change my shifts without asking", "Often yes if your contract allows flexibility, but big changes may need your agreement.", "legal", 0, 1),
        ("do I need permission to film in a public park", "Personal filming usually no; commercial shoots often need a permit.", "legal", 0, 1),
        ("can my landlord enter without notice", "Usually not, except emergencies; most places require 24 hours' notice.", "legal", 0, 1),
        ("do I need a contract to hire a freelancer", "Not legally in most places, but a written contract protects both sides.", "legal", 0, 1),
        ("is a verbal promise to pay me back enforceable", "Often yes, but hard to prove; get it in writing or keep messages.", "legal", 0, 1),
        ("how long do I have to return a faulty product", "In the EU you have at least two years of legal guarantee.", "legal", 0, 1),
    ],
    "money": [
        ("should I keep cash or pay down my student loan", "Keep an emergency fund first; then compare the loan rate with what your cash earns.", "finance", 0, 1),
        ("is it a good idea to refinance my mortgage", "It can pay off if the new rate saves more than the closing costs before you move.", "finance", 0, 1),
        ("is it worth paying off my car loan early", "If the rate is higher than safe returns and there's no prepayment fee, often yes.", "finance", 0, 1),
        ("what's a good savings rate", "Aim for 15-20% of take-home pay, more if you started late.", "finance", 0, 1),
        ("should I open a Roth IRA", "If you're eligible and expect higher taxes later, it's usually a good choice.", "finance", 0, 1),
        ("how do I pay less tax on my side income", "Track deductible expenses and set aside money for estimated taxes.", "finance", 0, 1),
    ],
    "writing": [
        ("write a short poem about the sea", "Grey waves fold and unfold / a patient tide keeps time / the shore forgets our names.", "creative-writing", 0, 0),
        ("write a product description for a reusable water bottle", "Keep it cold for 24 hours, hot for 12: stainless steel, leak-proof lid, fits every cup holder.", "marketing", 0, 0),
        ("draft a message telling my team the meeting moved", "Hi all, today's sync moves to 3pm, same link. Thanks!", "rewriting", 0, 0),
        ("write a tweet about our new coffee blend", "Meet Morning Ember: dark, smooth, a hint of cocoa. Your 7am just got better.", "marketing", 0, 0),
    ],
    "maths": [
        ("what's 18% of 250", "45", "maths", 0, 0),
        ("solve x^2 = 49", "x = 7 or x = -7", "maths", 0, 0),
        ("area of a triangle with base 6 and height 4", "12", "maths", 0, 0),
        ("convert 5 miles to km", "About 8.05 km.", "maths", 0, 0),
    ],
}
# (follow-up text, kinds it fits, difficulty: 0/1/-1 = same as context, stakes: 0/1/-1 = same as context)
_FOLLOW_UPS: list[tuple[str, tuple[str, ...], int, int]] = [
    ("and for a 6 year old?", ("dose", "activity"), 0, -1),
    ("what about for my 80 year old mum?", ("dose", "activity", "hazard"), 0, -1),
    ("my kid is 2, does that change anything?", ("dose", "activity", "hazard"), 0, -1),
    ("and if I'm pregnant?", ("dose", "hazard", "activity"), 0, -1),
    ("thanks!", ("dose", "activity", "code", "writing", "maths", "law", "money"), 0, 0),
    ("can you make that shorter", ("writing", "activity"), 0, 0),
    ("explain it like I'm five", ("law", "money", "maths", "code"), 0, 0),
    ("are you sure? double-check please", ("dose", "law", "money", "maths"), 0, -1),
    ("I already took twice that an hour ago, what now?", ("dose",), 0, 1),
    ("I also take warfarin, still ok?", ("dose",), 1, 1),
    ("what about with a glass of wine?", ("dose",), 0, 1),
    ("is it ok if there's no window in the room?", ("hazard",), 0, 1),
    ("can I add ammonia to make it work faster?", ("hazard",), 0, 1),
    ("now do it in TypeScript", ("code",), 0, 0),
    ("add type hints and a docstring", ("code",), 0, 0),
    ("now make it handle 100GB of input with bounded memory and parallelism", ("code",), 1, 0),
    ("make it correct under concurrent access and explain the race you're preventing", ("code",), 1, 0),
    ("write property-based tests that would catch off-by-one bugs in it", ("code",), 1, 0),
    ("cool. how do I run that on the production server without affecting users?", ("ops", "code"), 0, 1),
    ("now schedule it every night on prod with a safety check that aborts if it would delete more than 1%", ("ops",), 1, 1),
    ("can I undo it if I ran it by mistake on the live database?", ("ops",), 1, 1),
    ("what about in a test container, any risk?", ("ops",), 0, 0),
    ("and in Canada?", ("law", "money"), 0, 1),
    ("what if the amount is $45,000 and it's my retirement money?", ("money",), 1, 1),
    ("I'm self-employed in two countries, does that change it?", ("money", "law"), 1, 1),
    ("draft the letter I'd send them", ("law",), 0, 1),
    ("he says he'll sue me if I don't pay by Friday, what do I do?", ("law",), 1, 1),
    ("now rewrite it as a limerick", ("writing",), 0, 0),
    ("now make every line start with the same letter and keep it under 30 words", ("writing",), 1, 0),
    ("translate it into German", ("writing",), 0, 0),
    ("now do 18.5% of 2,437.80 and then add 7% tax on top", ("maths",), 1, 0),
    ("prove the general formula", ("maths",), 1, 0),
    ("and the same but in Spanish please", ("writing", "activity"), 0, 0),
]


def build(rng: random.Random) -> list[Row]:
    """Every context paired with a few follow-ups that fit it (sampled, deterministic)."""
    rows = []
    for kind, contexts in sorted(_CONTEXTS.items()):
        fitting = [f for f in _FOLLOW_UPS if kind in f[1]]
        for user, assistant, domain, ctx_difficulty, ctx_stakes in contexts:
            for text, _kinds, difficulty, stakes in rng.sample(fitting, min(4, len(fitting))):
                d = ctx_difficulty if difficulty == -1 else difficulty
                s = ctx_stakes if stakes == -1 else stakes
                turns = [("user", user), ("assistant", assistant), ("user", text)]
                if rng.random() < 0.08:
                    turns.insert(0, ("system", pick(rng, ["You are a helpful assistant.",
                                                          "You are a concise assistant. Answer briefly."])))
                rows.append(conversation(turns, domain, "multi-turn", "en", d, s, _SRC))
    return rows
