"""Generated multi-step problems: physics and chemistry calculations, ordering puzzles, word problems.

Each needs several dependent steps (a wrong intermediate value spoils the answer), which is where a
single small model most often fails; none is hard because of its topic words.
"""

from __future__ import annotations

import random

from authored import Row
from slots import pick, sample, single

_SRC = "templates_hard"
_SCIENCE = [
    "A {m} kg cart moving at {v} m/s collides with a stationary {n} kg cart and they stick together. What is their common speed, and what fraction of the kinetic energy is lost?",
    "A projectile is launched at {v} m/s at {a} degrees above horizontal from a {h} m high cliff. How far from the base does it land? (g = 9.8)",
    "A {c} µF capacitor charged to {u} V discharges through a {r} kΩ resistor. How long until the voltage falls to 10% of the start, and how much energy was dissipated by then?",
    "How many grams of {salt} are needed to make {ml} mL of a {conc} M solution, and what volume of that solution diluted to 1 L gives 0.05 M?",
    "A gas occupies {ml} mL at {t} °C and 1.2 atm. What volume does it occupy at {u} °C and 0.8 atm? Then how many moles is that?",
    "A {m} kg box is pulled with {f} N at {a}° above horizontal across a floor with friction coefficient 0.{k}. Find the acceleration.",
    "A spring with k = {f} N/m is compressed {h} cm and launches a {n} g ball up a frictionless ramp. How high does the ball rise?",
    "An isotope has a half-life of {t} days. What fraction remains after {u} days, and how long until less than 1% remains?",
    "Light of wavelength {w} nm hits a metal with work function {e} eV. Is there photoemission, and if so what is the maximum kinetic energy of the electrons and their speed?",
    "A {m}-kg satellite orbits {h}00 km above Earth's surface. Compute its orbital period and speed (R_earth = 6371 km, GM = 3.986e14).",
    "In a cross between two plants heterozygous for {g} independently assorting genes, what fraction of offspring are homozygous recessive for exactly one of them?",
    "{ml} mL of 0.{k} M HCl is mixed with {u} mL of 0.{k} M NaOH. What is the pH of the resulting solution?",
]
_SALTS = ["NaCl", "KNO3", "CaCl2", "MgSO4", "Na2CO3", "KCl", "CuSO4"]
_NAMES = ["Ana", "Ben", "Chloe", "Dmitri", "Esi", "Farid", "Greta", "Hugo", "Ines", "Jin", "Kai", "Lola", "Mateo",
          "Nadia", "Omar", "Pia", "Ravi", "Sofia", "Theo", "Yara"]
_RELATIONS = [("taller than", "tallest", "shortest"), ("older than", "oldest", "youngest"),
              ("faster than", "fastest", "slowest"), ("richer than", "richest", "poorest")]
_WORD_PROBLEMS = [
    "{a} buys {x} apples and {y} pears for ${t}. {b} buys {y} apples and {x} pears for ${u}. What does one apple cost?",
    "{a} can paint a fence in {x} hours and {b} in {y} hours. They start together, but {b} leaves after 1 hour. When is the fence finished?",
    "{a} saved ${t} and spends ${x} each week, while {b} saved ${u} and spends ${y} each week. After how many weeks will they have the same amount, and how much?",
    "{a}'s age is {x} times {b}'s. In {y} years {a} will be twice as old as {b}. How old is each now? Check your answer.",
    "A class trip costs ${t} in total. If {x} more students came, each would pay ${y} less. How many students are going?",
    "{a} walks to school at {x} km/h and is 5 minutes late; at {y} km/h she is 10 minutes early. How far is the school?",
    "{a} sells handmade cards: materials cost ${x} per card, the stall costs ${t} per day and cards sell for ${u}. {b} offers to buy {y} cards at a 20% discount. How many cards must {a} sell at full price that day to make a $100 profit?",
    "A tank holds {t} litres. Tap A fills it in {x} minutes, tap B in {y} minutes, and a drain empties it in {u} minutes. {a} opens both taps and {b} forgets to close the drain. How long until it's full?",
]


def _science_rows(rng: random.Random) -> list[Row]:
    rows = []
    for frame in _SCIENCE:
        for _ in range(4):
            text = frame.format(m=rng.randrange(2, 40), v=rng.randrange(5, 40), n=rng.randrange(1, 30),
                                a=pick(rng, [15, 25, 30, 37, 45, 53, 60]), h=rng.randrange(3, 60),
                                c=pick(rng, [10, 22, 47, 100, 220]), u=rng.randrange(20, 120), r=rng.randrange(1, 99),
                                salt=pick(rng, _SALTS), ml=rng.randrange(1, 20) * 50, conc=pick(rng, ["0.1", "0.25", "0.5", "1.5"]),
                                t=rng.randrange(5, 90), f=rng.randrange(20, 400), k=rng.randrange(1, 5),
                                w=rng.randrange(200, 700), e=pick(rng, ["2.1", "2.3", "4.3", "4.7", "5.1"]),
                                g=rng.randrange(2, 5))
            rows.append(single(text, "science", "science-calculation", "en", 1, 0, _SRC))
    return rows


def _ordering_rows(rng: random.Random) -> list[Row]:
    rows = []
    for _ in range(36):
        relation, top, bottom = pick(rng, _RELATIONS)
        people = sample(rng, _NAMES, rng.randrange(4, 6))
        order = people[:]  # order[0] is the most
        clues = [f"{order[i]} is {relation} {order[i + 1]}" for i in range(len(order) - 1)]
        rng.shuffle(clues)
        question = pick(rng, [f"Who is the {top}?", f"Who is the {bottom}?", "List them in order.",
                              f"Who is second {top}?"])
        text = f"{'. '.join(clues)}. {question}"
        if rng.random() < 0.5:
            text = f"Logic puzzle: {text} Explain your reasoning."
        rows.append(single(text, "reasoning", "logic-puzzle", "en", 1, 0, _SRC))
    return rows


def _word_problem_rows(rng: random.Random) -> list[Row]:
    rows = []
    for frame in _WORD_PROBLEMS:
        for _ in range(5):
            a, b = sample(rng, _NAMES, 2)
            x, y = sample(rng, list(range(2, 10)), 2)
            if x > y:
                x, y = y, x  # slower speed first, and a solvable walking problem
            apple, pear, students, k = rng.randrange(1, 5), rng.randrange(1, 5), rng.randrange(8, 30), rng.randrange(1, 4)
            values = {
                "a": a, "b": b, "x": x, "y": y,
                "t": x * apple + y * pear if "apples" in frame else students * (students + x) * k,
                "u": y * apple + x * pear if "apples" in frame else rng.randrange(20, 200),
            }
            if "twice as old" in frame:
                values["x"], values["y"] = x + 2, rng.randrange(2, 12) * x  # integer ages: b = y / (x - 2)
            if "drain" in frame:
                values["u"] = x + y + rng.randrange(5, 60)  # the drain is slower than either tap
            if "class trip" in frame:
                values["y"] = x * k
            rows.append(single(frame.format(**values), "maths", "word-problem", "en", 1, 0, _SRC))
    return rows


def build(rng: random.Random) -> list[Row]:
    """All generated multi-step rows."""
    return _science_rows(rng) + _ordering_rows(rng) + _word_problem_rows(rng)
