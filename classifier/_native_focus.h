/* What the files of classifier._native_focus share: text.py's constants, the scanned text, the
 * matches of one findall, and the functions one file calls in another.
 *
 *   _native_focus.c        the module: focus_final_item's checks and result, bind(), constants
 *   _native_focus_scan.c   the scanned buffer and the three regexes' scanners (findall)
 *   _native_focus_rules.c  grouping of matches, str.find / rfind, and _by_labels / _by_blocks
 *
 * Each scanner and rule is called at most once per text, so no call inside a loop crosses files.
 */
#ifndef CLASSIFIER_NATIVE_FOCUS_H
#define CLASSIFIER_NATIVE_FOCUS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

/* The constants of classifier/text.py; text.py uses this module only if they are equal. */
#define FEW_SHOT_MIN_CHARS 200
#define PREAMBLE_CHARS 300
#define FEW_SHOT_SCAN_CHARS 2048
#define MIN_FEW_SHOT_BLOCKS 3
/* The regexes _native_focus_scan.c reproduces, as written in text.py (checked there too). */
#define LABEL_PATTERN "\\n[#*> \\t]{0,4}+([A-Z][A-Za-z0-9 ,'_()-]{0,80}+:)(?=\\s|$)"
#define BLOCK_HEAD_PATTERN "\\n\\n\\s*([^ \\n]{1,16})"
#define BLOCK_TAIL_PATTERN "\\n[ \\t]*+([^ \\n]{1,16}+)[^\\n]*+\\n(?=\\n)"

#define PADDED_MAX (FEW_SHOT_SCAN_CHARS + 4)
/* Matches do not overlap and each takes at least three characters ("\nA:", "\n\nX", "\nX\n"). */
#define MAX_MATCHES (PADDED_MAX / 3 + 1)
/* A power of two over twice MAX_MATCHES, so open addressing always finds a free slot quickly. */
#define MAX_TABLE 2048

/* Positions in the buffer (under 2,052) fit 16 bits, which keeps the per-call state (on the stack)
 * under 30 kB. */
typedef int16_t pos_t;
typedef char positions_fit_pos_t[PADDED_MAX < INT16_MAX ? 1 : -1]; /* a compile-time check (C99) */

/* The scanned end of the text as the Python `padded` ("\n\n" + region + "\n\n"), with the
 * positions of its newlines and colons: the regexes start at a newline and labels end at a colon, so
 * the scanners step from one to the next instead of reading every character. */
typedef struct {
    Py_UCS4 s[PADDED_MAX];
    pos_t newline[PADDED_MAX];
    pos_t colon[PADDED_MAX];
    Py_ssize_t n, n_newline, n_colon;
} Scan;

typedef struct {
    pos_t start; /* of a match's group (a label or a word) in Scan.s */
    pos_t len;
} Span;

typedef struct {
    pos_t first, last, count; /* match indices of its first and last occurrence */
} Group;

/* One findall's results, grouped by (digit-folded) text in first-seen order, as dict/Counter keep them. */
typedef struct {
    Span match[MAX_MATCHES];
    Group group[MAX_MATCHES];
    int n_match, n_group;
    pos_t table[MAX_TABLE]; /* group index + 1; 0 is a free slot */
} Matches;

/* Functions shared between these files only: hidden, so the .so exports nothing more and calls to them
 * are direct rather than through the PLT. */
#if defined(__GNUC__)
#define NATIVE_INTERNAL __attribute__((visibility("hidden")))
#else
#define NATIVE_INTERNAL
#endif

/* _native_focus_scan.c: the buffer, then each regex's findall into m. */
NATIVE_INTERNAL void load_scan(Scan *sc, PyObject *text, Py_ssize_t offset);
NATIVE_INTERNAL void find_labels(const Scan *sc, Py_ssize_t end, Matches *m);
NATIVE_INTERNAL void find_block_heads(const Scan *sc, Matches *m);
NATIVE_INTERNAL void find_block_tails(const Scan *sc, Matches *m);

/* _native_focus_rules.c: 1 and (first, last, examples) in out when a rule finds a few-shot frame. */
NATIVE_INTERNAL int by_labels(const Scan *sc, int cut, Matches *m, Py_ssize_t out[3]);
NATIVE_INTERNAL int by_blocks(const Scan *sc, Matches *m, Py_ssize_t out[3]);
NATIVE_INTERNAL int has_two_blank_lines(const Scan *sc);

#endif
