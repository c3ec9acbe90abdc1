"""Generated high-stakes items: dosages, interactions, hazards, legal, money, security, infra.

Labelling rule applied here: a wrong answer costs health, money, data or legal standing, so stakes=1.
Difficulty stays 0 for single-fact lookups ("max dose of X for an adult") and is 1 when the answer
needs a calculation (weight-based dosing, mL of a suspension), weighing several conditions, or a
multi-step procedure where one wrong step is harmful.
"""

from __future__ import annotations

import random

from authored import Row
from slots import pick, sample, single

_SRC = "templates_stakes"
_DRUGS = ["ibuprofen", "paracetamol", "acetaminophen", "naproxen", "aspirin", "cetirizine", "loratadine",
          "diphenhydramine", "loperamide", "omeprazole", "amoxicillin", "prednisolone", "codeine",
          "melatonin", "pseudoephedrine", "ranitidine", "famotidine", "magnesium citrate", "iron sulfate",
          "zinc", "vitamin D3", "metformin", "sertraline", "tramadol"]
_POPULATIONS = ["an adult", "a 70 year old", "a pregnant woman", "a breastfeeding mum", "someone with kidney disease",
                "a teenager", "someone with a stomach ulcer", "a heavy drinker", "someone with asthma",
                "a person with liver problems", "my 80-year-old dad", "a 12 year old"]
_DOSE_FRAMES = [
    "max daily dose of {d} for {p}?", "how much {d} is safe for {p}", "{d} dosage {p}",
    "Is {d} safe for {p}, and what's the usual limit?", "what happens if {p} takes too much {d}",
    "how many hours apart should {p} space doses of {d}",
]
_WEIGHT_FRAMES = [
    "My child weighs {kg} kg. The {d} syrup is {mg} mg per 5 mL and the dose is {per} mg/kg. How many mL per dose?",
    "{d} suspension {mg}mg/5ml, kid is {kg}kg, doc said {per} mg per kg per dose. how many ml do i give?? pls check",
    "Calculate the {d} dose in mL for a {kg} kg toddler at {per} mg/kg using a {mg} mg/5 mL bottle, and the max per day.",
]
_KID_DRUGS = ["ibuprofen", "paracetamol", "amoxicillin", "cefalexin", "azithromycin", "prednisolone"]
_INTERACT_FRAMES = [
    "can i take {a} with {b}", "is it safe to combine {a} and {b}?", "{a} and {b} together ok?",
    "Any interaction between {a} and {b}? I've been prescribed both.",
    "I take {a} daily. My pharmacist sold me {b}. Should I worry?",
]
_INTERACT_DRUGS = ["warfarin", "lisinopril", "sertraline", "fluoxetine", "metformin", "levothyroxine", "lithium",
                   "simvastatin", "clopidogrel", "the pill", "methotrexate", "ibuprofen", "St John's wort",
                   "grapefruit juice", "alcohol", "tramadol", "sildenafil", "allopurinol", "amlodipine",
                   "omeprazole", "ciprofloxacin", "prednisone"]
_CHEMICALS = ["bleach", "vinegar", "ammonia", "hydrogen peroxide", "rubbing alcohol", "drain cleaner",
              "oven cleaner", "pool chlorine", "baking soda", "toilet bowl cleaner", "acetone", "muriatic acid"]
_CHEM_FRAMES = ["can i mix {a} and {b}", "what happens if you mix {a} with {b}?", "is {a} + {b} dangerous",
                "I accidentally mixed {a} and {b} in a bucket in a small bathroom, what now?",
                "Is it safe to store {a} next to {b} in the garage?"]
_LEGAL_TOPICS = [
    ("can my employer fire me without notice", 0), ("how long does my landlord have to return my deposit", 0),
    ("can I break my lease early without penalty", 0), ("is it legal to fly a drone over my neighbour's yard", 0),
    ("do I have to pay back an overpayment of wages", 0), ("can I be evicted in winter", 0),
    ("what are my rights if my flight is cancelled", 0), ("can a debt collector call me at work", 0),
    ("is a handwritten will valid", 0), ("how do I get sole custody", 1),
    ("can my employer read my work emails", 0), ("what happens if I drive with an expired licence", 0),
    ("can I sue my contractor for unfinished work and how", 1),
    ("how should I split assets in a divorce when one of us owns a business", 1),
    ("what counts as wrongful dismissal and what compensation can I claim", 1),
]
_PLACES = ["in Texas", "in California", "in Ontario", "in England", "in Scotland", "in Ireland", "in New South Wales",
           "in Germany", "in the Netherlands", "in New York", "in Florida", "in Quebec", "in India", "in South Africa"]
_MONEY_EASY = [
    "should I put {x} dollars in a CD or a money market fund", "is it worth paying a {r}% fee to a robo-advisor",
    "what happens if I miss a credit card payment of {x}", "can I withdraw {x} from my 401k to pay a medical bill",
    "my bank charged me an overdraft fee of {r}0 dollars, can I get it back",
    "is a {r}% APR car loan good right now", "should I cosign a {x} loan for my brother",
    "send {x} to the account in this email from my 'CEO', he says it's urgent",
]
_MONEY_HARD = [
    "I have {x} in savings, a {r}% car loan with {y} left, and want to start investing. Lay out the order of priorities with numbers.",
    "Compare a 15-year mortgage at {r}.1% vs a 30-year at {r}.9% on a {y} loan, including total interest and the opportunity cost if I invest the difference.",
    "My employer matches 50% up to {r}% of salary. I earn {y} and have {x} of credit card debt at 24%. How should I split my monthly {z} of surplus?",
    "If I retire at 60 with {y} saved and need {x} a year, adjusted for {r}% inflation, how long does it last at 5% nominal returns? Show the math and the risks.",
    "Rent at {z} a month vs buying a {y} apartment with 20% down at {r}.5% interest: run a 10-year comparison with maintenance, taxes and opportunity cost.",
]


def _medical_rows(rng: random.Random) -> list[Row]:
    rows = []
    for drug in _DRUGS:
        for population in sample(rng, _POPULATIONS, 3):
            rows.append(single(pick(rng, _DOSE_FRAMES).format(d=drug, p=population), "medical",
                               "dosage", "en", 0, 1, _SRC))
    for drug in _KID_DRUGS:
        for _ in range(3):
            text = pick(rng, _WEIGHT_FRAMES).format(d=drug, kg=rng.randrange(8, 31), mg=pick(rng, [100, 120, 125, 200, 250, 400]),
                                                    per=pick(rng, [5, 7.5, 10, 12.5, 15, 20]))
            rows.append(single(text, "medical", "dosage-calculation", "en", 1, 1, _SRC))
    for _ in range(50):
        a, b = sample(rng, _INTERACT_DRUGS, 2)
        rows.append(single(pick(rng, _INTERACT_FRAMES).format(a=a, b=b), "medical", "drug-interaction", "en", 0, 1, _SRC))
    return rows


def _hazard_rows(rng: random.Random) -> list[Row]:
    rows = []
    for _ in range(36):
        a, b = sample(rng, _CHEMICALS, 2)
        rows.append(single(pick(rng, _CHEM_FRAMES).format(a=a, b=b), "safety", "chemical-safety", "en", 0, 1, _SRC))
    return rows


def _legal_rows(rng: random.Random) -> list[Row]:
    rows = []
    for topic, hard in _LEGAL_TOPICS:
        for place in sample(rng, _PLACES, 3):
            text = pick(rng, ["{t} {p}?", "{p}, {t}?", "Quick legal question {p}: {t}?"]).format(t=topic, p=place)
            rows.append(single(text, "legal", "legal-question", "en", hard, 1, _SRC))
    return rows


def _money_rows(rng: random.Random) -> list[Row]:
    rows = []
    for frames, hard in ((_MONEY_EASY, 0), (_MONEY_HARD, 1)):
        for frame in frames:
            for _ in range(3):
                text = frame.format(x=f"{rng.randrange(2, 90) * 500:,}", y=f"{rng.randrange(40, 400) * 1000:,}",
                                    r=rng.randrange(2, 9), z=f"{rng.randrange(3, 40) * 100:,}")
                rows.append(single(text, "finance", "personal-finance", "en", hard, 1, _SRC))
    return rows


_CRYPTO_PURPOSES = ["hashing user passwords", "signing JWTs", "encrypting credit card numbers at rest",
                    "generating session tokens", "verifying webhook payloads", "encrypting backups",
                    "storing API keys in a database", "generating password reset links"]
_CRYPTO_CHOICES = ["MD5", "SHA-256", "bcrypt", "AES-CBC without a MAC", "AES-GCM", "HMAC-SHA256", "Math.random()",
                   "uuid4", "base64 encoding", "RSA with PKCS#1 v1.5", "Argon2id", "a homemade XOR cipher"]
_INFRA_DANGER = [
    "how do i {a} on the production {b}", "is it safe to {a} on our live {b} during the day?",
    "command to {a} on {b}, we're in prod", "what's the fastest way to {a} on the {b} that serves customers",
]
_INFRA_ACTIONS = ["drop all tables", "wipe the data directory", "delete old snapshots", "change the root password",
                  "reboot every node at once", "purge the message queue", "rotate the encryption keys",
                  "downgrade the kernel", "remove the firewall rules", "delete all users created before 2020",
                  "run a schema migration", "flush all redis keys"]
_INFRA_TARGETS = ["postgres cluster", "kubernetes cluster", "redis server", "mysql replica", "mongodb", "web servers",
                  "s3 bucket", "elasticsearch cluster", "kafka brokers"]


def _tech_rows(rng: random.Random) -> list[Row]:
    rows = []
    for purpose in _CRYPTO_PURPOSES:
        for choice in sample(rng, _CRYPTO_CHOICES, 3):
            text = pick(rng, ["is {c} ok for {p}?", "should we use {c} for {p}", "{c} for {p} - good idea or not"])
            rows.append(single(text.format(c=choice, p=purpose), "security", "security", "en", 0, 1, _SRC))
    for _ in range(30):
        text = pick(rng, _INFRA_DANGER).format(a=pick(rng, _INFRA_ACTIONS), b=pick(rng, _INFRA_TARGETS))
        rows.append(single(text, "devops", "infra", "en", 0, 1, _SRC))
    return rows


_CONDITIONS = ["type 2 diabetes", "heart failure", "atrial fibrillation", "chronic kidney disease", "asthma",
               "epilepsy", "high blood pressure", "an underactive thyroid", "liver cirrhosis", "gout", "depression",
               "a history of stomach bleeding", "COPD", "osteoporosis"]
_CASE_FRAMES = [
    "I'm {age} with {c1} and {c2}. I take {d1} and {d2}. My doctor wants to add {d3}. What are the risks, and what should be monitored in the first weeks?",
    "My {rel} ({age}) has {c1} and {c2}, and takes {d1}, {d2} and {d3}. She's been dizzy and confused since yesterday. What could be going on and how urgent is it?",
    "Patient, {age}, {c1}, {c2}. Current meds: {d1}, {d2}. Considering {d3}. List the interactions and contraindications in order of importance, with what to check before starting.",
]
_RELATIVES = ["mother", "grandmother", "aunt", "mother-in-law"]
_VULN_SNIPPETS = [
    "os.system('convert ' + request.args['file'] + ' out.png')",
    "yaml.load(request.data)",
    "pickle.loads(base64.b64decode(request.cookies['session']))",
    "res.redirect(req.query.next)",
    "db.query(`SELECT * FROM orders WHERE user = ${req.params.user}`)",
    "eval(request.form['expr'])",
    "element.innerHTML = location.hash.slice(1)",
    "token = str(random.randint(100000, 999999))  # password reset code",
    "if request.headers.get('X-Admin') == 'true': return admin_panel()",
    "jwt.decode(token, options={'verify_signature': False})",
    "open('/srv/uploads/' + filename, 'wb').write(data)",
    "subprocess.run(f\"git clone {repo_url}\", shell=True)",
]
_VULN_FRAMES = ["Is this line safe in our production web app?\n{c}", "security review please: `{c}` - what's the risk and the fix?",
                "Our pentest flagged this: {c}\nExplain the attack concretely and give a safe version."]
_LEGAL_SCENARIOS = [
    "My business partner and I own a {biz} 50/50 with no written agreement. He wants to sell his half to a competitor. What are my options {p}?",
    "A customer slipped in my {biz} and is threatening to sue for lost wages. My insurance may not cover it. What should I do now {p}, and what should I not say?",
    "I'm being sued by a former employee of my {biz} for unpaid overtime going back three years. How does the claim work {p}, and what records will matter?",
    "We want to sell our {biz} and the buyer asks for a two-year non-compete and warranties on all tax filings. What's reasonable {p} and how do I limit my liability?",
]
_BUSINESSES = ["restaurant", "bakery", "software consultancy", "dental practice", "hair salon", "gym", "bookshop",
               "plumbing company"]


def _hard_stakes_rows(rng: random.Random) -> list[Row]:
    rows = []
    for _ in range(36):
        c1, c2 = sample(rng, _CONDITIONS, 2)
        d1, d2, d3 = sample(rng, _INTERACT_DRUGS, 3)
        text = pick(rng, _CASE_FRAMES).format(age=rng.randrange(45, 92), c1=c1, c2=c2, d1=d1, d2=d2, d3=d3,
                                              rel=pick(rng, _RELATIVES))
        rows.append(single(text, "medical", "clinical-reasoning", "en", 1, 1, _SRC))
    for snippet in _VULN_SNIPPETS:
        for frame in sample(rng, _VULN_FRAMES, 2):
            rows.append(single(frame.format(c=snippet), "security", "code-review", "en", 1, 1, _SRC))
    for frame in _LEGAL_SCENARIOS:
        for business in sample(rng, _BUSINESSES, 4):
            rows.append(single(frame.format(biz=business, p=pick(rng, _PLACES)), "legal", "legal-analysis", "en", 1, 1, _SRC))
    return rows


def build(rng: random.Random) -> list[Row]:
    """All generated high-stakes rows."""
    return (_medical_rows(rng) + _hazard_rows(rng) + _legal_rows(rng) + _money_rows(rng) + _tech_rows(rng)
            + _hard_stakes_rows(rng))
