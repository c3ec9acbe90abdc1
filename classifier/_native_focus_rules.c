/* The few-shot rules of classifier._native_focus: text.py's _by_labels and _by_blocks on the matches
 * of _native_focus_scan.c, with Counter's grouping and str.find / rfind with their slice-style start
 * and end. Offsets are code points, as in Python's slicing.
 */
#include "_native_focus.h"

#include <string.h>

static inline Py_UCS4
fold_digit(Py_UCS4 c, int fold) /* _FOLD_DIGITS: ASCII digits only */
{
    return (fold && c >= '0' && c <= '9') ? '#' : c;
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
int
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
int
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
int
has_two_blank_lines(const Scan *sc)
{
    Py_ssize_t len = sc->n - 4;
    Py_ssize_t first = find_text(sc, 2, len, 2, NO_TEXT, 0, len, 0);
    return find_text(sc, 2, len, 2, NO_TEXT, first + 2, len, 0) >= 0;
}
