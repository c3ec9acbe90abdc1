/* The scanned text of classifier._native_focus and the findall of each of text.py's three regexes.
 *
 * Each regex is reproduced by a hand-written scanner (possessive parts give nothing back, the greedy
 * `\s*` of the block heads does) with `findall`'s non-overlapping semantics. Offsets are code points.
 */
#include "_native_focus.h"

#include <string.h>

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
void
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
void
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
void
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
void
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
