"""Hand-written word lists behind the dense vocabulary signals.

The hashed n-gram weights learn vocabulary from the training data; these lists add prior knowledge
that generalises past it (a dosage question about a drug the seed data never names still says
"dose"). Entries are lower-case single words or two-word phrases, matched on whole words, written
comma-separated.
"""

from __future__ import annotations


def _entries(text: str) -> tuple[str, ...]:
    return tuple(entry.strip() for entry in text.split(",") if entry.strip())


LEXICON: dict[str, tuple[str, ...]] = {
    "constraints": _entries(
        """
        must, exactly, at least, at most, no more, more than, less than, without, only, do not, ensure,
        strictly, within, make sure, format, words, limit, required, requirement, requirements,
        constraint, constraints, each, every
        """
    ),
    "reasoning": _entries(
        """
        why, prove, proof, derive, explain, optimize, optimise, design, architecture, compare, tradeoff,
        tradeoffs, trade-off, step by, analyze, analyse, analysis, debug, implement, algorithm,
        complexity, edge cases, evaluate, justify, plan, strategy, refactor, concurrency, probability,
        integral, which of, most likely, infer, deduce, conclude, hypothesis, theorem, lemma, induction,
        recursion, puzzle, riddle, logic, ambiguous, paradox, estimate, calculate
        """
    ),
    "stakes": _entries(
        """
        dose, dosage, mg, symptom, symptoms, diagnosis, diagnose, medication, medicine, pregnant,
        pregnancy, allergic, allergy, chest pain, overdose, suicide, emergency, doctor, prescription,
        lawsuit, sue, contract, legal, lawyer, court, custody, visa, immigration, tax, taxes, irs,
        invest, investment, mortgage, loan, retirement, 401k, crypto, stocks, password, passwords,
        vulnerability, exploit, firewall, production, rm -rf, drop table, delete, migration, encrypt,
        encryption, credentials, breach, safety, gas leak, wiring, poison, poisoning, insurance,
        liability, compliance, gdpr, hipaa, injury, bleeding, surgery, dosis, médico, abogado,
        impuestos, arzt, steuer, avocat, impôts
        """
    ),
    "code": _entries(
        """
        python, java, javascript, typescript, rust, golang, sql, regex, bash, api, function, class, def,
        return, import, const, async, await, compile, compiler, runtime, exception, stack trace, bug,
        unit test, docker, kubernetes, json, yaml, http, database, query, script, code, program
        """
    ),
    "math": _entries(
        """
        equation, solve, integral, derivative, matrix, eigenvalue, polynomial, prime, probability,
        expected value, variance, sum, product, modulo, divisible, fraction, percent, percentage, ratio,
        geometry, triangle, angle, proof, theorem, limit, series, sequence, factorial, combinatorics,
        permutation
        """
    ),
}
