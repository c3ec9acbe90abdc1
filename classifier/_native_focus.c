/* The few-shot detection of classifier/text.py (`_focus_final_item_python`) in C.
 *
 * It must give exactly the Python result for every str, since the shipped weights were trained on it:
 * each regex is reproduced by a hand-written scanner (possessive parts give nothing back, the greedy
 * `\s*` of the block heads does) with `findall`'s non-overlapping semantics, and str.find / rfind
 * with their slice-style start and end. Offsets are code points, as in Python's slicing.
 *
 * The scanned end of the text is copied once into a UCS4 buffer laid out as the Python `padded`
 * string ("\n\n" + region + "\n\n"); `lined` ("\n" + region) and `region` are views into it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* The constants of classifier/text.py; text.py uses this module only if they are equal. */
#define FEW_SHOT_MIN_CHARS 200
#define PREAMBLE_CHARS 300
#define FEW_SHOT_SCAN_CHARS 2048
#define MIN_FEW_SHOT_BLOCKS 3
/* The regexes reproduced below, as written in text.py (checked there too). */
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

static inline int
is_upper_ascii(Py_UCS4 c)
{
    return c >= 'A' && c <= 'Z';
}

static inline int
is_label_char(Py_UCS4 c) /* [A-Za-z0-9 ,'_()-] */
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ' ' || c == ','
           || c == '\'' || c == '_' || c == '(' || c == ')' || c == '-';
}

static inline int
is_label_prefix(Py_UCS4 c) /* [#*> \t] */
{
    return c == '#' || c == '*' || c == '>' || c == ' ' || c == '\t';
}

static inline int
is_word_char(Py_UCS4 c) /* [^ \n] */
{
    return c != ' ' && c != '\n';
}

static inline Py_UCS4
fold_digit(Py_UCS4 c, int fold) /* _FOLD_DIGITS: ASCII digits only */
{
    return (fold && c >= '0' && c <= '9') ? '#' : c;
}

/* Appends to out the buffer positions of the ASCII character ch in the code units data[0:len]. memchr
 * finds its byte; a unit (of `kind` bytes) whose value is ch holds that byte exactly once. */
static Py_ssize_t
index_char(const void *data, Py_ssize_t len, int kind, Py_UCS4 ch, pos_t *out, Py_ssize_t count)
{
    const char *bytes = data, *end = bytes + len * kind;
    for (const char *p = bytes; (p = memchr(p, (int)ch, (size_t)(end - p))) != NULL; p++) {
        Py_ssize_t unit = (p - bytes) / kind;
        if (PyUnicode_READ(kind, data, unit) == ch)
            out[count++] = (pos_t)(2 + unit);
    }
    return count;
}

/* Copy text[offset:] into sc as padded, indexing its newlines and colons. */
static void
load_scan(Scan *sc, PyObject *text, Py_ssize_t offset)
{
    Py_ssize_t len = PyUnicode_GET_LENGTH(text) - offset;
    Py_UCS4 *s = sc->s;
    int kind = PyUnicode_KIND(text);
    const void *data = (const char *)PyUnicode_DATA(text) + offset * kind;
    /* One loop per kind, so each is a plain widening copy the compiler vectorises. */
    if (kind == PyUnicode_1BYTE_KIND) {
        for (Py_ssize_t i = 0; i < len; i++)
            s[2 + i] = ((const Py_UCS1 *)data)[i];
    }
    else if (kind == PyUnicode_2BYTE_KIND) {
        for (Py_ssize_t i = 0; i < len; i++)
            s[2 + i] = ((const Py_UCS2 *)data)[i];
    }
    else {
        memcpy(s + 2, data, (size_t)len * sizeof(Py_UCS4));
    }
    s[0] = s[1] = s[2 + len] = s[3 + len] = '\n';
    sc->newline[0] = 0;
    sc->newline[1] = 1;
    Py_ssize_t nl = index_char(data, len, kind, '\n', sc->newline, 2);
    sc->newline[nl++] = (pos_t)(2 + len);
    sc->newline[nl++] = (pos_t)(3 + len);
    sc->n = len + 4;
    sc->n_newline = nl;
    sc->n_colon = index_char(data, len, kind, ':', sc->colon, 0);
}

/* The index of the first newline at or after pos (n_newline if none). */
static Py_ssize_t
newline_at_or_after(const Scan *sc, Py_ssize_t pos)
{
    Py_ssize_t lo = 0, hi = sc->n_newline;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (sc->newline[mid] < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void
add_match(Matches *m, Py_ssize_t start, Py_ssize_t len)
{
    if (m->n_match < MAX_MATCHES) { /* always true (see MAX_MATCHES); a guard against overruns */
        m->match[m->n_match].start = (pos_t)start;
        m->match[m->n_match].len = (pos_t)len;
        m->n_match++;
    }
}

/* _LABEL_RE.findall over lined = s[1:end]:
 *     \n[#*> \t]{0,4}+([A-Z][A-Za-z0-9 ,'_()-]{0,80}+:)(?=\s|$)
 * `$` (no MULTILINE) is the end or a final "\n", which `\s` covers. As ':' is not in the label class,
 * the possessive run reaches a colon exactly when the next colon is within 80 characters and only
 * label characters come before it. */
static void
find_labels(const Scan *sc, Py_ssize_t end, Matches *m)
{
    const Py_UCS4 *s = sc->s;
    Py_ssize_t resume = 1, c = 0;
    m->n_match = 0;
    for (Py_ssize_t t = 1; t < sc->n_newline && sc->newline[t] < end; t++) {
        Py_ssize_t j = sc->newline[t] + 1;
        if (j - 1 < resume)
            continue;
        for (int k = 0; k < 4 && j < end && is_label_prefix(s[j]); k++)
            j++;
        if (j >= end || !is_upper_ascii(s[j]))
            continue;
        Py_ssize_t start = j;
        while (c < sc->n_colon && sc->colon[c] <= start)
            c++;
        if (c == sc->n_colon)
            break; /* no colon left, so no label either */
        Py_ssize_t colon = sc->colon[c];
        if (colon >= end || colon - start - 1 > 80)
            continue;
        for (j = start + 1; j < colon && is_label_char(s[j]); j++)
            ;
        if (j < colon || (colon + 1 < end && !Py_UNICODE_ISSPACE(s[colon + 1])))
            continue;
        add_match(m, start, colon + 1 - start);
        resume = colon + 1;
    }
}

/* _BLOCK_HEAD_RE.findall over padded: \n\n\s*([^ \n]{1,16})
 * `\s*` is greedy and gives characters back: if it runs to the end, the word starts at the last
 * character before the end that is not a space or newline (a tab, "\r", "\xa0", ...). */
static void
find_block_heads(const Scan *sc, Matches *m)
{
    const Py_UCS4 *s = sc->s;
    Py_ssize_t n = sc->n, resume = 0;
    m->n_match = 0;
    for (Py_ssize_t t = 0; t + 1 < sc->n_newline; t++) {
        Py_ssize_t i = sc->newline[t];
        if (i < resume || sc->newline[t + 1] != i + 1)
            continue;
        Py_ssize_t k = i + 2;
        while (k < n && Py_UNICODE_ISSPACE(s[k]))
            k++;
        if (k == n) {
            while (k > i + 2 && !is_word_char(s[k - 1]))
                k--;
            if (k == i + 2)
                break; /* only spaces and newlines are left: no later start can match either */
            k--;
        }
        Py_ssize_t j = k;
        while (j < n && j - k < 16 && is_word_char(s[j]))
            j++;
        add_match(m, k, j - k);
        resume = j;
    }
}

/* _BLOCK_TAIL_RE.findall over padded: \n[ \t]*+([^ \n]{1,16}+)[^\n]*+\n(?=\n)
 * The word stops at or before the line's newline, so `[^\n]*+\n` ends at the next newline. */
static void
find_block_tails(const Scan *sc, Matches *m)
{
    const Py_UCS4 *s = sc->s;
    Py_ssize_t resume = 0;
    m->n_match = 0;
    for (Py_ssize_t t = 0; t + 2 < sc->n_newline; t++) {
        Py_ssize_t i = sc->newline[t], e = sc->newline[t + 1];
        if (i < resume || sc->newline[t + 2] != e + 1)
            continue;
        Py_ssize_t k = i + 1;
        while (k < e && (s[k] == ' ' || s[k] == '\t'))
            k++;
        Py_ssize_t j = k;
        while (j < e && j - k < 16 && is_word_char(s[j]))
            j++;
        if (j == k)
            continue;
        add_match(m, k, j - k);
        resume = e + 1;
    }
}

static int
same_text(const Py_UCS4 *s, Span a, Span b, int fold)
{
    if (a.len != b.len)
        return 0;
    for (int i = 0; i < a.len; i++) {
        if (fold_digit(s[a.start + i], fold) != fold_digit(s[b.start + i], fold))
            return 0;
    }
    return 1;
}

/* Counter(findall(...)) (or the `counts` dict of folded labels): groups in first-seen order. */
static void
group_matches(const Py_UCS4 *s, Matches *m, int fold)
{
    int size = 16;
    while (size < 2 * m->n_match)
        size *= 2;
    memset(m->table, 0, (size_t)size * sizeof(pos_t));
    m->n_group = 0;
    for (int i = 0; i < m->n_match; i++) {
        Span w = m->match[i];
        Py_uhash_t h = 5381;
        for (int c = 0; c < w.len; c++)
            h = h * 33 + fold_digit(s[w.start + c], fold);
        h ^= h >> 13;
        Py_ssize_t slot = (Py_ssize_t)(h & (Py_uhash_t)(size - 1));
        for (;;) {
            int g = m->table[slot] - 1;
            if (g < 0) {
                m->table[slot] = (pos_t)(m->n_group + 1);
                m->group[m->n_group].first = m->group[m->n_group].last = (pos_t)i;
                m->group[m->n_group].count = 1;
                m->n_group++;
                break;
            }
            if (same_text(s, m->match[m->group[g].first], w, fold)) {
                m->group[g].last = (pos_t)i;
                m->group[g].count++;
                break;
            }
            slot = (slot + 1) & (size - 1);
        }
    }
}

/* str.find / str.rfind, in the string sc->s[base:base + n], of `newlines` "\n" characters followed
 * by the text of `body`, within [start:end] of that string (slice semantics: negative bounds count
 * from the end, both are clamped). The result is an offset in that string, or -1. */
static Py_ssize_t
find_text(const Scan *sc, Py_ssize_t base, Py_ssize_t n, int newlines, Span body, Py_ssize_t start,
          Py_ssize_t end, int reverse)
{
    const Py_UCS4 *s = sc->s;
    Py_ssize_t len = newlines + body.len;
    if (end > n)
        end = n;
    else if (end < 0 && (end += n) < 0)
        end = 0;
    if (start < 0 && (start += n) < 0)
        start = 0;
    if (end - start < len)
        return -1;
    /* Candidates in sc->s: [lo, hi]. */
    Py_ssize_t lo = base + start, hi = base + end - len;
    if (newlines > 0) { /* candidates are newlines */
        Py_ssize_t t = newline_at_or_after(sc, reverse ? hi + 1 : lo) - (reverse ? 1 : 0);
        for (; t >= 0 && t < sc->n_newline; t += reverse ? -1 : 1) {
            Py_ssize_t pos = sc->newline[t];
            if (pos < lo || pos > hi)
                break;
            int c = 1;
            while (c < newlines && s[pos + c] == '\n')
                c++;
            while (c < len && c >= newlines && s[pos + c] == s[body.start + c - newlines])
                c++;
            if (c == len)
                return pos - base;
        }
        return -1;
    }
    for (Py_ssize_t pos = reverse ? hi : lo; pos >= lo && pos <= hi; pos += reverse ? -1 : 1) {
        int c = 0;
        while (c < len && s[pos + c] == s[body.start + c])
            c++;
        if (c == len)
            return pos - base;
    }
    return -1;
}

static const Span NO_TEXT = {0, 0};

/* _by_labels over lined = "\n" + region = s[1:n-2]: 1 and (first, last, examples) in out, or 0. */
static int
by_labels(const Scan *sc, int cut, Matches *m, Py_ssize_t out[3])
{
    Py_ssize_t lined_len = sc->n - 3;
    find_labels(sc, 1 + lined_len, m);
    if (m->n_match < 4)
        return 0;
    group_matches(sc->s, m, 1);
    int opener = -1, repeated = 0;
    for (int g = 0; g < m->n_group; g++) {
        if (m->group[g].count < 2)
            continue;
        repeated++;
        /* In a cut text the opener is the label whose last occurrence comes first, else the first. */
        if (opener < 0 || (cut && m->group[g].last < m->group[opener].last))
            opener = g;
    }
    if (repeated < 2)
        return 0;
    Span first_raw = m->match[m->group[opener].first], last_raw = m->match[m->group[opener].last];
    Py_ssize_t first = find_text(sc, 1, lined_len, 1, first_raw, 0, lined_len, 0);
    Py_ssize_t last = find_text(sc, 1, lined_len, 1, last_raw, 0, lined_len, 1);
    if (first < 0 || last < 0) { /* the label sits after a markdown or quote prefix */
        first = find_text(sc, 1, lined_len, 0, first_raw, 0, lined_len, 0) - 1;
        last = find_text(sc, 1, lined_len, 0, last_raw, 0, lined_len, 1) - 1;
    }
    out[0] = first > 0 ? first : 0;
    out[1] = last > 0 ? last : 0;
    out[2] = m->group[opener].count - 1;
    return 1;
}

/* _is_marker: not (word.isalpha() and len(word) > 1) and "'" not in word and not word.endswith(",") */
static int
is_marker(const Py_UCS4 *s, Span w)
{
    int alpha = w.len > 1;
    for (int i = 0; i < w.len; i++) {
        if (s[w.start + i] == '\'')
            return 0;
        if (alpha && !Py_UNICODE_ISALPHA(s[w.start + i]))
            alpha = 0;
    }
    return !alpha && s[w.start + w.len - 1] != ',';
}

/* _top_marker: the group of the most frequent marker seen at least MIN_FEW_SHOT_BLOCKS times (the
 * first seen wins a tie), or -1. */
static int
top_marker(const Py_UCS4 *s, Matches *m)
{
    if (m->n_match < MIN_FEW_SHOT_BLOCKS)
        return -1;
    group_matches(s, m, 0);
    int best = -1;
    for (int g = 0; g < m->n_group; g++) {
        int need = best >= 0 ? m->group[best].count + 1 : MIN_FEW_SHOT_BLOCKS;
        if (m->group[g].count >= need && is_marker(s, m->match[m->group[g].first]))
            best = g;
    }
    return best;
}

/* _by_blocks over padded: 1 and (first, last, examples) in out, or 0. */
static int
by_blocks(const Scan *sc, Matches *m, Py_ssize_t out[3])
{
    Py_ssize_t n = sc->n;
    find_block_heads(sc, m);
    int best = top_marker(sc->s, m);
    if (best >= 0) {
        Span marker = m->match[m->group[best].first];
        out[0] = find_text(sc, 0, n, 2, marker, 0, n, 0);
        out[1] = find_text(sc, 0, n, 2, marker, 0, n, 1);
        out[2] = m->group[best].count - 1;
        return 1;
    }
    find_block_tails(sc, m);
    best = top_marker(sc->s, m);
    if (best < 0)
        return 0;
    Span marker = m->match[m->group[best].first];
    Py_ssize_t first_line = find_text(sc, 0, n, 1, marker, 0, n, 0);
    Py_ssize_t last_line = find_text(sc, 0, n, 1, marker, 0, n, 1);
    Py_ssize_t first = find_text(sc, 0, n, 2, NO_TEXT, 0, first_line, 1);
    Py_ssize_t after = find_text(sc, 0, n, 2, NO_TEXT, last_line, n, 0);
    out[0] = first > 0 ? first : 0;
    if (after >= n - 2) {
        Py_ssize_t last = find_text(sc, 0, n, 2, NO_TEXT, 0, last_line, 1);
        out[1] = last > 0 ? last : 0;
        out[2] = m->group[best].count - 1;
    }
    else {
        out[1] = after;
        out[2] = m->group[best].count;
    }
    return 1;
}

/* region.find("\n\n", region.find("\n\n") + 2) >= 0, with region = s[2:n-2] */
static int
has_two_blank_lines(const Scan *sc)
{
    Py_ssize_t len = sc->n - 4;
    Py_ssize_t first = find_text(sc, 2, len, 2, NO_TEXT, 0, len, 0);
    return find_text(sc, 2, len, 2, NO_TEXT, first + 2, len, 0) >= 0;
}

/* A slice bound as Python normalises it. */
static Py_ssize_t
slice_index(Py_ssize_t i, Py_ssize_t n)
{
    if (i < 0 && (i += n) < 0)
        return 0;
    return i > n ? n : i;
}

/* What focus_final_item returns: classifier.text.FocusedText, given once by bind(). Its two slots are
 * set through their member descriptors, as its frozen-dataclass __init__ does, without the cost of
 * running that __init__ (about 1 us, a sixth of the whole call). */
typedef struct {
    PyTypeObject *result_type;
    PyObject *text_slot, *examples_slot;
} State;

static PyObject *
make_result(PyObject *module, PyObject *text, Py_ssize_t examples)
{
    State *state = PyModule_GetState(module);
    if (state->result_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "classifier._native_focus.bind(FocusedText) was not called");
        return NULL;
    }
    PyObject *count = PyLong_FromSsize_t(examples);
    if (count == NULL)
        return NULL;
    PyObject *result = state->result_type->tp_alloc(state->result_type, 0);
    if (result != NULL
        && (Py_TYPE(state->text_slot)->tp_descr_set(state->text_slot, result, text) < 0
            || Py_TYPE(state->examples_slot)->tp_descr_set(state->examples_slot, result, count) < 0)) {
        Py_CLEAR(result);
    }
    Py_DECREF(count);
    return result;
}

static PyObject *
bind(PyObject *module, PyObject *cls)
{
    State *state = PyModule_GetState(module);
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "bind() takes the FocusedText class");
        return NULL;
    }
    /* Results are made by tp_alloc without tp_new: right only for a direct subclass of object. */
    if (((PyTypeObject *)cls)->tp_base != &PyBaseObject_Type) {
        PyErr_SetString(PyExc_TypeError, "bind() needs a direct subclass of object");
        return NULL;
    }
    PyObject *text_slot = PyObject_GetAttrString(cls, "text");
    PyObject *examples_slot = text_slot ? PyObject_GetAttrString(cls, "examples") : NULL;
    if (examples_slot == NULL) {
        Py_XDECREF(text_slot);
        return NULL;
    }
    /* Slots of the class itself (a slots dataclass): anything else is not what this sets. */
    if (!Py_IS_TYPE(text_slot, &PyMemberDescr_Type) || !Py_IS_TYPE(examples_slot, &PyMemberDescr_Type)
        || PyDescr_TYPE(text_slot) != (PyTypeObject *)cls || PyDescr_TYPE(examples_slot) != (PyTypeObject *)cls) {
        Py_DECREF(text_slot);
        Py_DECREF(examples_slot);
        PyErr_SetString(PyExc_TypeError, "bind() needs a class with `text` and `examples` slots");
        return NULL;
    }
    Py_INCREF(cls);
    Py_XSETREF(state->result_type, (PyTypeObject *)cls);
    Py_XSETREF(state->text_slot, text_slot);
    Py_XSETREF(state->examples_slot, examples_slot);
    Py_RETURN_NONE;
}

/* The bitwise OR of the characters of text[start:end] (at most 0x10ffff): it is as wide (ASCII, Latin-1, UCS-2, UCS-4) as
 * their maximum, which is all PyUnicode_New needs to give a joined string its canonical kind. */
static Py_UCS4
width_of(PyObject *text, Py_ssize_t start, Py_ssize_t end)
{
    if (PyUnicode_IS_ASCII(text))
        return 0x7f;
    Py_UCS4 bits = 0;
    const void *data = PyUnicode_DATA(text);
    switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND:
        for (Py_ssize_t i = start; i < end; i++)
            bits |= ((const Py_UCS1 *)data)[i];
        break;
    case PyUnicode_2BYTE_KIND:
        for (Py_ssize_t i = start; i < end; i++)
            bits |= ((const Py_UCS2 *)data)[i];
        break;
    default:
        for (Py_ssize_t i = start; i < end; i++)
            bits |= ((const Py_UCS4 *)data)[i];
    }
    return bits > 0x10ffff ? 0x10ffff : bits; /* over 0xffff already means UCS-4 */
}

/* to[at:at + len] = text[start:start + len]. `to` is no wider than `text` (see width_of), and
 * PyUnicode_CopyCharacters refuses Latin-1 into ASCII even where the characters are ASCII. */
static void
copy_chars(PyObject *to, Py_ssize_t at, PyObject *text, Py_ssize_t start, Py_ssize_t len)
{
    int to_kind = PyUnicode_KIND(to), kind = PyUnicode_KIND(text);
    char *to_data = PyUnicode_DATA(to);
    const char *data = PyUnicode_DATA(text);
    if (to_kind == kind) {
        memcpy(to_data + at * kind, data + start * kind, (size_t)(len * kind));
        return;
    }
    for (Py_ssize_t i = 0; i < len; i++)
        PyUnicode_WRITE(to_kind, to_data, at + i, PyUnicode_READ(kind, data, start + i));
}

/* preamble[:PREAMBLE_CHARS] + "\n" + text[last:] where preamble = text[:first].strip(), or text[last:]
 * if the preamble is empty; built in one allocation. */
static PyObject *
join_focus(PyObject *text, Py_ssize_t n, Py_ssize_t first, Py_ssize_t last)
{
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t start = 0, end = first;
    while (start < end && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, start)))
        start++;
    while (end > start && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, end - 1)))
        end--;
    if (start == end)
        return PyUnicode_Substring(text, last, n);
    if (end - start > PREAMBLE_CHARS)
        end = start + PREAMBLE_CHARS;
    Py_ssize_t pre_len = end - start, final_len = n - last;
    Py_UCS4 width = Py_MAX(width_of(text, start, end), width_of(text, last, n));
    PyObject *joined = PyUnicode_New(pre_len + 1 + final_len, width);
    if (joined != NULL) {
        copy_chars(joined, 0, text, start, pre_len);
        PyUnicode_WRITE(PyUnicode_KIND(joined), PyUnicode_DATA(joined), pre_len, '\n');
        copy_chars(joined, pre_len + 1, text, last, final_len);
    }
    return joined;
}

static PyObject *
focus_final_item(PyObject *module, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "focus_final_item() argument must be str, not %.80s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(arg) < 0)
        return NULL;
#endif
    PyObject *text = arg;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (n < FEW_SHOT_MIN_CHARS)
        return make_result(module, text, 0);
    /* The first three newlines (text.find twice from the last): fewer means not few-shot. */
    Py_ssize_t newline = -1;
    for (int k = 0; k < 3; k++) {
        newline = PyUnicode_FindChar(text, '\n', newline + 1, n, 1);
        if (newline == -2)
            return NULL;
        if (newline < 0)
            return make_result(module, text, 0);
    }

    Py_ssize_t offset = n > FEW_SHOT_SCAN_CHARS ? n - FEW_SHOT_SCAN_CHARS : 0;
    Scan sc; /* with `m`, under 30 kB: on the stack, no allocation per call */
    Matches m;
    Py_ssize_t found[3];
    load_scan(&sc, text, offset);
    int ok = sc.n_colon >= 4 && by_labels(&sc, offset > 0, &m, found);
    if (!ok && has_two_blank_lines(&sc))
        ok = by_blocks(&sc, &m, found);
    if (!ok)
        return make_result(module, text, 0);
    PyObject *focused = join_focus(text, n, slice_index(found[0] + offset, n), slice_index(found[1] + offset, n));
    if (focused == NULL)
        return NULL;
    PyObject *result = make_result(module, focused, found[2]);
    Py_DECREF(focused);
    return result;
}

static PyMethodDef methods[] = {
    {"focus_final_item", focus_final_item, METH_O,
     "focus_final_item(text, /)\n--\n\nclassifier.text._focus_final_item_python in C: the same FocusedText."},
    {"bind", bind, METH_O, "bind(cls, /)\n--\n\nSet the class focus_final_item returns (FocusedText)."},
    {NULL, NULL, 0, NULL},
};

static int
exec_module(PyObject *module)
{
    if (PyModule_AddIntConstant(module, "FEW_SHOT_MIN_CHARS", FEW_SHOT_MIN_CHARS) < 0
        || PyModule_AddIntConstant(module, "PREAMBLE_CHARS", PREAMBLE_CHARS) < 0
        || PyModule_AddIntConstant(module, "FEW_SHOT_SCAN_CHARS", FEW_SHOT_SCAN_CHARS) < 0
        || PyModule_AddIntConstant(module, "MIN_FEW_SHOT_BLOCKS", MIN_FEW_SHOT_BLOCKS) < 0) {
        return -1;
    }
    PyObject *patterns = Py_BuildValue("(sss)", LABEL_PATTERN, BLOCK_HEAD_PATTERN, BLOCK_TAIL_PATTERN);
    if (patterns == NULL || PyModule_AddObject(module, "PATTERNS", patterns) < 0) {
        Py_XDECREF(patterns);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static int
traverse_module(PyObject *module, visitproc visit, void *arg)
{
    State *state = PyModule_GetState(module);
    Py_VISIT(state->result_type);
    Py_VISIT(state->text_slot);
    Py_VISIT(state->examples_slot);
    return 0;
}

static int
clear_module(PyObject *module)
{
    State *state = PyModule_GetState(module);
    Py_CLEAR(state->result_type);
    Py_CLEAR(state->text_slot);
    Py_CLEAR(state->examples_slot);
    return 0;
}

static void
free_module(void *module)
{
    clear_module(module);
}

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "classifier._native_focus",
    .m_doc = "Few-shot detection of classifier.text.focus_final_item, in C (the same result as the Python).",
    .m_size = sizeof(State),
    .m_methods = methods,
    .m_slots = slots,
    .m_traverse = traverse_module,
    .m_clear = clear_module,
    .m_free = free_module,
};

PyMODINIT_FUNC
PyInit__native_focus(void)
{
    return PyModuleDef_Init(&module_def);
}
