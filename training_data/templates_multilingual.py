"""Generated non-English asks in eight languages, covering all four label combinations.

Each language gets easy lookups and creative asks, easy high-stakes questions (dosage, legal,
money), hard maths and coding, so that language is never a proxy for either label.
"""

from __future__ import annotations

import random

from authored import Row
from slots import pick, single

_SRC = "templates_multilingual"
# language -> {kind: [frames]}; kinds map to labels in _KINDS.
_FRAMES: dict[str, dict[str, list[str]]] = {
    "de": {
        "lookup": ["Was ist die Hauptstadt von {country}?", "welche sprache spricht man in {country}", "Wie viele Einwohner hat {country} ungefähr?"],
        "creative": ["Schreib ein kurzes Gedicht über {topic}.", "ein lustiger Spruch über {topic} bitte", "Schreibe eine kurze Geschichte (100 Wörter) über {topic}."],
        "snippet": ["Wie kann ich in Python {op}?", "python {op} – wie geht das?"],
        "dose": ["Wie viel {drug} darf ein Erwachsener maximal pro Tag nehmen?", "Ist {drug} in der Schwangerschaft erlaubt?", "Kann ich {drug} zusammen mit Alkohol nehmen?"],
        "law": ["Darf mein {who} {act}?", "Ist es legal, dass mein {who} {act}?"],
        "proof": ["Beweise: {stmt}", "Zeige ausführlich, dass {stmt}"],
        "code": ["Schreibe in Python eine Funktion, die {task}. Bitte mit Tests für Randfälle.", "Implementiere effizient: {task}. Erkläre die Laufzeit."],
    },
    "fr": {
        "lookup": ["Quelle est la capitale du pays suivant : {country} ?", "quelle langue parle-t-on en {country}", "{country} : combien d'habitants environ ?"],
        "creative": ["Écris un petit poème sur {topic}.", "une blague sur {topic} stp", "Écris une histoire courte (100 mots) sur {topic}."],
        "snippet": ["Comment {op} en Python ?", "python : {op}, c'est quoi la syntaxe ?"],
        "dose": ["Quelle est la dose maximale de {drug} par jour pour un adulte ?", "Peut-on prendre du {drug} pendant la grossesse ?", "{drug} et alcool, c'est dangereux ?"],
        "law": ["Mon {who} a-t-il le droit de {act} ?", "Est-ce légal que mon {who} puisse {act} ?"],
        "proof": ["Démontre que {stmt}", "Prouve rigoureusement : {stmt}"],
        "code": ["Écris une fonction Python qui {task}, avec des tests pour les cas limites.", "Implémente efficacement en Python : {task}. Donne la complexité."],
    },
    "es": {
        "lookup": ["¿Cuál es la capital de {country}?", "qué idioma se habla en {country}", "¿cuántos habitantes tiene {country} más o menos?"],
        "creative": ["Escribe un poema corto sobre {topic}.", "un chiste sobre {topic} porfa", "Escribe un cuento corto (100 palabras) sobre {topic}."],
        "snippet": ["¿Cómo puedo {op} en Python?", "python {op}, cómo se hace"],
        "dose": ["¿Cuál es la dosis máxima diaria de {drug} para un adulto?", "¿Se puede tomar {drug} durante el embarazo?", "¿Es peligroso mezclar {drug} con alcohol?"],
        "law": ["¿Puede mi {who} {act}?", "¿Es legal que mi {who} pueda {act}?"],
        "proof": ["Demuestra que {stmt}", "Prueba con detalle: {stmt}"],
        "code": ["Escribe una función en Python que {task}, con pruebas para los casos límite.", "Implementa de forma eficiente en Python: {task}. Explica la complejidad."],
    },
    "pt": {
        "lookup": ["Qual é a capital de {country}?", "que língua se fala em {country}"],
        "creative": ["Escreva um poema curto sobre {topic}.", "uma piada sobre {topic}"],
        "snippet": ["Como {op} em Python?"],
        "dose": ["Qual a dose máxima diária de {drug} para adultos?", "Posso tomar {drug} grávida?"],
        "law": ["Meu {who} pode {act}?"],
        "proof": ["Prove que {stmt}"],
        "code": ["Escreva uma função em Python que {task}, com testes para casos extremos."],
    },
    "it": {
        "lookup": ["Qual è la capitale di {country}?", "che lingua si parla in {country}"],
        "creative": ["Scrivi una breve poesia su {topic}.", "una barzelletta su {topic}"],
        "snippet": ["Come posso {op} in Python?"],
        "dose": ["Qual è la dose massima giornaliera di {drug} per un adulto?", "Posso prendere {drug} in gravidanza?"],
        "law": ["Il mio {who} può {act}?"],
        "proof": ["Dimostra che {stmt}"],
        "code": ["Scrivi una funzione Python che {task}, con test per i casi limite."],
    },
    "nl": {
        "lookup": ["Wat is de hoofdstad van {country}?", "welke taal spreken ze in {country}"],
        "creative": ["Schrijf een kort gedicht over {topic}.", "een grapje over {topic} graag"],
        "snippet": ["Hoe kan ik in Python {op}?"],
        "dose": ["Wat is de maximale dagdosis {drug} voor een volwassene?", "Mag ik {drug} gebruiken als ik zwanger ben?"],
        "law": ["Mag mijn {who} {act}?"],
        "proof": ["Bewijs dat {stmt}"],
        "code": ["Schrijf een Python-functie die {task}, met tests voor randgevallen."],
    },
    "zh": {
        "lookup": ["{country}的首都是哪里？", "{country}说什么语言？"],
        "creative": ["写一首关于{topic}的短诗。", "讲一个关于{topic}的笑话"],
        "snippet": ["Python 里怎么{op}？"],
        "dose": ["{drug}成人每天最多吃多少？", "怀孕期间可以吃{drug}吗？"],
        "law": ["我的{who}可以{act}吗？"],
        "proof": ["请证明：{stmt}"],
        "code": ["用 Python 写一个函数：{task}，并给出边界情况的测试。"],
    },
    "ja": {
        "lookup": ["{country}の首都はどこですか？", "{country}では何語が話されていますか？"],
        "creative": ["{topic}についての短い詩を書いてください。", "{topic}についてのジョークを教えて"],
        "snippet": ["Pythonで{op}方法は？"],
        "dose": ["{drug}は大人で1日に最大どれくらい飲めますか？", "妊娠中に{drug}を飲んでも大丈夫ですか？"],
        "law": ["{who}は{act}ことができますか？"],
        "proof": ["次を証明してください：{stmt}"],
        "code": ["Pythonで{task}関数を書いてください。境界ケースのテストも付けてください。"],
    },
}
_KINDS = {"lookup": ("general", "factual-lookup", 0, 0), "creative": ("creative-writing", "creative-writing", 0, 0),
          "snippet": ("coding-python", "code-snippet", 0, 0), "dose": ("medical", "dosage", 0, 1),
          "law": ("legal", "legal-question", 0, 1), "proof": ("maths", "proof", 1, 0),
          "code": ("coding-python", "code-generation", 1, 0)}
_SLOTS: dict[str, dict[str, list[str]]] = {
    "de": {"topic": ["den Regen", "meine Katze", "den Montag", "das Meer", "den Frühling"],
           "op": ["eine Liste sortieren", "eine Datei lesen", "ein Dictionary durchlaufen", "einen String umdrehen"],
           "who": ["Vermieter", "Arbeitgeber", "Nachbar"],
           "act": ["meine Wohnung ohne Ankündigung betreten", "mir wegen Krankheit kündigen", "meine E-Mails lesen"]},
    "fr": {"topic": ["la pluie", "mon chat", "le lundi", "la mer", "le printemps"],
           "op": ["trier une liste", "lire un fichier", "parcourir un dictionnaire", "inverser une chaîne"],
           "who": ["propriétaire", "employeur", "voisin"],
           "act": ["entrer chez moi sans prévenir", "me licencier pendant un arrêt maladie", "lire mes e-mails"]},
    "es": {"topic": ["la lluvia", "mi gato", "los lunes", "el mar", "la primavera"],
           "op": ["ordenar una lista", "leer un archivo", "recorrer un diccionario", "invertir una cadena"],
           "who": ["casero", "jefe", "vecino"],
           "act": ["entrar en mi piso sin avisar", "despedirme estando de baja", "leer mis correos"]},
    "pt": {"topic": ["a chuva", "o meu gato", "a segunda-feira", "o mar"],
           "op": ["ordenar uma lista", "ler um arquivo", "inverter uma string"],
           "who": ["senhorio", "patrão"], "act": ["entrar na minha casa sem avisar", "me demitir durante a licença médica"]},
    "it": {"topic": ["la pioggia", "il mio gatto", "il lunedì", "il mare"],
           "op": ["ordinare una lista", "leggere un file", "invertire una stringa"],
           "who": ["padrone di casa", "datore di lavoro"], "act": ["entrare in casa senza avvisare", "licenziarmi durante la malattia"]},
    "nl": {"topic": ["de regen", "mijn kat", "maandag", "de zee"],
           "op": ["een lijst sorteren", "een bestand lezen", "een string omdraaien"],
           "who": ["verhuurder", "werkgever"], "act": ["zonder aankondiging mijn huis binnenkomen", "mij ontslaan tijdens ziekte"]},
    "zh": {"topic": ["下雨", "我的猫", "星期一", "大海"], "op": ["排序列表", "读取文件", "反转字符串"],
           "who": ["房东", "老板"], "act": ["不打招呼进我家", "在我病假期间解雇我"]},
    "ja": {"topic": ["雨", "猫", "月曜日", "海"], "op": ["リストを並べ替える", "ファイルを読む", "文字列を反転する"],
           "who": ["大家さん", "会社"], "act": ["無断で部屋に入る", "病気休暇中に解雇する"]},
}
_COUNTRIES = ["Peru", "Kenia", "Norwegen", "Vietnam", "Chile", "Marokko", "Ungarn", "Island", "Kolumbien", "Finnland"]
_DRUGS = ["Ibuprofen", "Paracetamol", "Aspirin", "Cetirizin", "Diclofenac", "Naproxen", "Loperamid"]
_STATEMENTS = ["n^3 + 2n is divisible by 3 for every integer n", "the square root of 5 is irrational",
               "1 + 3 + 5 + ... + (2n-1) = n^2", "there are infinitely many primes",
               "2^n > n^2 for every integer n >= 5", "the product of two odd numbers is odd",
               "every integer > 1 has a prime factor", "a^2 + b^2 >= 2ab for all real a, b"]
_TASKS = ["returns the longest palindromic substring of a string", "merges overlapping intervals",
          "finds all pairs in a list that sum to a target, without duplicates",
          "checks whether a Sudoku grid is valid", "computes the edit distance between two words",
          "returns the k most frequent words, ties broken alphabetically"]


def build(rng: random.Random) -> list[Row]:
    """Rows in de, fr, es, pt, it, nl, zh and ja."""
    rows = []
    for lang, kinds in sorted(_FRAMES.items()):
        slots = _SLOTS[lang]
        for kind, frames in sorted(kinds.items()):
            domain, task, difficulty, stakes = _KINDS[kind]
            repeats = 5 if lang in ("de", "fr", "es") else 3
            for _ in range(repeats):
                values = {"country": pick(rng, _COUNTRIES), "drug": pick(rng, _DRUGS), "stmt": pick(rng, _STATEMENTS),
                          "task": pick(rng, _TASKS), **{k: pick(rng, v) for k, v in slots.items()}}
                frame = pick(rng, frames)
                rows.append(single(frame.format(**values), domain, task, lang, difficulty, stakes, _SRC))
    return rows



