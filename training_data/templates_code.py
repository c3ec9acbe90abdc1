"""Generated coding asks: short Python function tasks in three phrasings, and tasks in other languages.

A task is hard (difficulty=1) when a typical small model's first attempt tends to miss an edge
case or the algorithm: tricky specifications, non-obvious algorithms, exact formatting rules. Short
specs checked by tests the model does not see (published pass rates of 7B-47B models on such tasks
are around 40-60%) count as hard when the one-line spec leaves a choice the tests pin down (which
middle, rounding, "odd positions" vs odd indices, rotation past the length, ties); fully determined
one-liners (count the uppercase letters) stay easy.
"""

from __future__ import annotations

import random

from authored import Row
from slots import pick, single

_SRC = "templates_code"
# (function name, what it does, example call, expected result, difficulty)
_PY_TASKS: list[tuple[str, str, str, str, int]] = [
    ("count_upper", "count the uppercase letters in a string", "count_upper('HeLLo')", "3", 0),
    ("last_digit", "return the last digit of a non-negative integer", "last_digit(4096)", "6", 0),
    ("is_sorted", "check whether a list is sorted in non-decreasing order", "is_sorted([1, 2, 2, 5])", "True", 0),
    ("middle_char", "return the middle character(s) of a string (two if the length is even)", "middle_char('abcd')", "'bc'", 1),
    ("product_list", "multiply all numbers in a list", "product_list([2, 3, 4])", "24", 0),
    ("first_repeated_char", "return the first character that repeats in a string, or None", "first_repeated_char('abcab')", "'a'", 1),
    ("celsius_list", "convert a list of Fahrenheit temperatures to Celsius rounded to 1 decimal", "celsius_list([32, 212])", "[0.0, 100.0]", 1),
    ("tuple_sum_pairs", "add two tuples element-wise", "tuple_sum_pairs((1, 2), (3, 4))", "(4, 6)", 0),
    ("odd_positions", "return the elements at odd indices of a list", "odd_positions([9, 8, 7, 6])", "[8, 6]", 1),
    ("word_lengths", "map each word in a sentence to its length", "word_lengths('hi there')", "{'hi': 2, 'there': 5}", 1),
    ("remove_vowels", "remove all vowels from a string", "remove_vowels('banana')", "'bnn'", 0),
    ("cube_sum", "return the sum of cubes of the first n natural numbers", "cube_sum(3)", "36", 0),
    ("kth_char", "return the k-th character (1-based) of a string", "kth_char('python', 2)", "'y'", 0),
    ("count_evens", "count how many even numbers are in a list", "count_evens([1, 2, 4, 7])", "2", 0),
    ("rotate_left", "rotate a list to the left by k positions", "rotate_left([1, 2, 3, 4], 1)", "[2, 3, 4, 1]", 1),
    ("min_max_diff", "return the difference between the largest and smallest value", "min_max_diff([4, 9, 1])", "8", 0),
    ("join_with_dash", "join a list of strings with dashes", "join_with_dash(['a', 'b'])", "'a-b'", 0),
    ("sum_of_squares_odd", "sum the squares of the odd numbers from 1 to n", "sum_of_squares_odd(5)", "35", 1),
    ("all_unique", "check whether all elements of a list are distinct", "all_unique([1, 2, 3])", "True", 0),
    ("char_frequency", "count the frequency of each character in a string", "char_frequency('aab')", "{'a': 2, 'b': 1}", 0),
    ("dict_filter_value", "keep only the dict entries whose value is at least n", "dict_filter_value({'a': 5, 'b': 1}, 3)", "{'a': 5}", 0),
    ("triangle_area", "compute the area of a triangle from base and height", "triangle_area(10, 4)", "20.0", 0),
    ("count_substring", "count non-overlapping occurrences of a substring", "count_substring('aaaa', 'aa')", "2", 0),
    ("digits_to_list", "turn a non-negative integer into a list of its digits", "digits_to_list(507)", "[5, 0, 7]", 0),
    ("gcd_list", "return the greatest common divisor of a list of positive integers", "gcd_list([12, 18, 30])", "6", 0),
    ("nested_depth", "return the maximum nesting depth of a list (a flat list has depth 1)", "nested_depth([1, [2, [3]]])", "3", 1),
    ("count_overlapping", "count overlapping occurrences of a pattern in a string", "count_overlapping('aaaa', 'aa')", "3", 1),
    ("next_bigger", "return the next bigger number formed by rearranging the digits, or -1", "next_bigger(534976)", "536479", 1),
    ("look_and_say", "return the n-th term of the look-and-say sequence starting from '1'", "look_and_say(5)", "'111221'", 1),
    ("spiral_order", "return the elements of a matrix in clockwise spiral order", "spiral_order([[1, 2], [3, 4]])", "[1, 2, 4, 3]", 1),
    ("max_subarray_product", "return the maximum product of a contiguous subarray (negatives allowed)", "max_subarray_product([2, 3, -2, 4, -1])", "48", 1),
    ("decode_ways", "count the ways to decode a digit string where 1-26 map to A-Z", "decode_ways('226')", "3", 1),
    ("is_valid_ipv4", "check whether a string is a valid dotted IPv4 address without leading zeros", "is_valid_ipv4('192.168.01.1')", "False", 1),
    ("wildcard_match", "match a string against a pattern with ? and * wildcards", "wildcard_match('adceb', '*a*b')", "True", 1),
    ("longest_increasing_subsequence", "return the length of the longest strictly increasing subsequence in O(n log n)", "longest_increasing_subsequence([10, 9, 2, 5, 3, 7, 101, 18])", "4", 1),
    ("trap_rain", "compute how much rain water is trapped between bars of given heights", "trap_rain([0, 1, 0, 2, 1, 0, 1, 3, 2, 1, 2, 1])", "6", 1),
    ("calc_rpn", "evaluate an expression in reverse Polish notation with integer division truncating toward zero", "calc_rpn(['4', '13', '5', '/', '+'])", "6", 1),
    ("min_window", "return the smallest substring of s containing all characters of t (with multiplicity)", "min_window('ADOBECODEBANC', 'ABC')", "'BANC'", 1),
    ("num_to_excel_col", "convert a positive integer to an Excel column title", "num_to_excel_col(28)", "'AB'", 1),
    ("excel_col_to_num", "convert an Excel column title to its number", "excel_col_to_num('ZY')", "701", 1),
    ("simplify_path", "simplify a Unix-style absolute path (handle '.', '..' and repeated slashes)", "simplify_path('/a/./b/../../c/')", "'/c'", 1),
    ("word_break", "decide if a string can be segmented into words from a dictionary", "word_break('applepenapple', ['apple', 'pen'])", "True", 1),
    ("largest_rectangle", "return the area of the largest rectangle in a histogram", "largest_rectangle([2, 1, 5, 6, 2, 3])", "10", 1),
    ("count_primes_below", "count primes strictly below n for n up to 10**7 efficiently", "count_primes_below(100)", "25", 1),
    ("format_duration", "turn a number of seconds into a human string like '1 hour, 2 minutes and 5 seconds'", "format_duration(3725)", "'1 hour, 2 minutes and 5 seconds'", 1),
    ("balanced_split", "return the index where the sum of the left part equals the sum of the right part, or -1", "balanced_split([1, 7, 3, 6, 5, 6])", "3", 1),
    ("roman_to_int", "convert a Roman numeral to an integer, handling subtractive pairs", "roman_to_int('MCMXCIV')", "1994", 1),
    ("group_consecutive", "summarise a sorted list of ints as ranges", "group_consecutive([0, 1, 2, 4, 5, 7])", "['0->2', '4->5', '7']", 1),
    ("nth_ugly", "return the n-th number whose only prime factors are 2, 3 and 5", "nth_ugly(10)", "12", 1),
    ("sum_of_digit_powers", "find all numbers between a and b equal to the sum of their digits raised to consecutive powers", "sum_of_digit_powers(1, 100)", "[1, 2, 3, 4, 5, 6, 7, 8, 9, 89]", 1),
    ("josephus", "return the survivor's position in the Josephus problem with n people and step k", "josephus(7, 3)", "4", 1),
    ("lcs_string", "return one longest common subsequence of two strings", "lcs_string('ABCBDAB', 'BDCABA')", "a string of length 4", 1),
    ("can_partition", "decide whether a list of positive ints can be split into two subsets with equal sum", "can_partition([1, 5, 11, 5])", "True", 1),
    ("version_compare", "compare two version strings like '1.0.10' and '1.0.9' numerically, treating missing parts as 0", "version_compare('1.01', '1.001.0')", "0", 1),
    ("parse_csv_line", "split one CSV line into fields, honouring double-quoted fields with escaped quotes", "parse_csv_line('a,\"b,\"\"c\"\"\",d')", "['a', 'b,\"c\"', 'd']", 1),
    ("weekday_of", "return the weekday name of a date without using the datetime module", "weekday_of(2000, 1, 1)", "'Saturday'", 1),
]
_PY_FRAMES = [
    ("Write a python function to {desc}.\nExample: {call} == {out}", "plain"),
    ("Write a function {name}(...) that will {desc}. Your code should pass: assert {call} == {out}", "assert"),
    ("def {name}(*args):\n    \"\"\"{desc_cap}.\n    >>> {call}\n    {out}\n    \"\"\"\n\ncomplete this function", "docstring"),
    ("python: {desc}", "terse"),
    ("Implement `{name}` in Python — it should {desc}. e.g. `{call}` gives `{out}`. Add a couple of tests.", "tests"),
]
# (task, difficulty) for languages other than Python; each is rendered in two languages.
_OTHER_TASKS: list[tuple[str, int]] = [
    ("reads a JSON file and prints one field", 0), ("checks if a string is a palindrome", 0),
    ("returns the sum of an array of numbers", 0), ("counts the words in a text", 0),
    ("converts a date string from DD/MM/YYYY to ISO format", 0), ("removes duplicates from an array", 0),
    ("finds the maximum value in a map/dictionary", 0), ("reverses the words in a sentence", 0),
    ("prints the current time every second for 10 seconds", 0), ("fetches a URL and prints the status code", 0),
    ("implements a thread-safe counter that many workers increment", 1),
    ("parses a log file and returns the 10 most common IP addresses using bounded memory", 1),
    ("implements a generic binary heap with decrease-key", 1),
    ("implements a retrying HTTP client with exponential backoff, jitter and a total deadline", 1),
    ("detects cycles in a dependency graph and prints one cycle", 1),
    ("merges k sorted streams lazily without loading them into memory", 1),
    ("implements a small expression parser with precedence climbing", 1),
    ("implements a rate limiter shared by several processes", 1),
    ("serialises a tree with cycles to JSON and back, preserving shared references", 1),
    ("computes the shortest path on a grid with walls where you may break at most one wall", 1),
]
_LANGS = ["JavaScript", "TypeScript", "Go", "Rust", "Java", "C#", "C++", "Kotlin", "Ruby", "PHP", "Swift", "bash"]
_OTHER_FRAMES = ["write a {lang} program that {task}", "{lang}: function that {task}?",
                 "Can you show me idiomatic {lang} code that {task}? Include error handling.",
                 "In {lang}, how would I write something that {task}"]


def _python_rows(rng: random.Random) -> list[Row]:
    rows = []
    for index, (name, desc, call, out, hard) in enumerate(_PY_TASKS):
        frames = [_PY_FRAMES[index % len(_PY_FRAMES)], _PY_FRAMES[(index + 2) % len(_PY_FRAMES)]]
        for frame, _kind in frames:
            text = frame.format(name=name, desc=desc, desc_cap=desc[0].upper() + desc[1:], call=call, out=out)
            rows.append(single(text, "coding-python", "code-generation", "en", hard, 0, _SRC))
    return rows


def _other_rows(rng: random.Random) -> list[Row]:
    rows = []
    for task, hard in _OTHER_TASKS:
        for lang in rng.sample(_LANGS, 2):
            text = pick(rng, _OTHER_FRAMES).format(lang=lang, task=task)
            domain = "coding-bash" if lang == "bash" else "coding-other"
            rows.append(single(text, domain, "code-generation", "en", hard, 0, _SRC))
    return rows


def build(rng: random.Random) -> list[Row]:
    """All generated coding rows."""
    return _python_rows(rng) + _other_rows(rng)
