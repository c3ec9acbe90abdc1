/* One window of classifier._native_features: the byte scan, the hashed n-grams (with their weight
 * sums and lexicon counts) and the dense signals, bit for bit as Featurizer.transform_one computes
 * them (see _native_features.c for what the extension does as a whole).
 *
 * All hash arithmetic is uint64 and wraps modulo 2**64, exactly like numpy's uint64 arrays.
 */
#include "_native_features.h"

#include <math.h>
#include <string.h>

static inline uint64_t
bucket_of(uint64_t salted, int shift)
{
    return (salted * MIX) >> shift;
}

static inline void
emit(Sink *sink, uint64_t salted, int lexical)
{
    uint64_t bucket = bucket_of(salted, sink->shift);
    if (sink->weights != NULL) {
        sink->sum_difficulty += (double)sink->weights[2 * bucket];
        sink->sum_stakes += (double)sink->weights[2 * bucket + 1];
    }
    if (lexical) {
        unsigned char category = sink->lexicon[bucket];
        if (category) {  /* rare: skipping 0 avoids a chain of increments of one counter */
            sink->lexicon_counts[category]++;
        }
    }
    if (sink->indices != NULL) {
        sink->indices[sink->n_hashes] = (int64_t)bucket;
    }
    sink->n_hashes++;
}

/* Prefix sums of the hash digits times powers of BASE, byte class counts, and the hash of each word
 * (a run of non-separator bytes). prefix[k] is the sum over bytes j < k of digit_j * BASE**j, so the
 * hash of bytes s..e, sum of digit_j * BASE**(j - s), is (prefix[e + 1] - prefix[s]) * BASE**-s. */
static void
scan_bytes(NativeFeatures *self, TextCounts *counts)
{
    const unsigned char *bytes = self->padded;
    const uint64_t *powers = self->powers.buf;
    const uint64_t *inverse = self->inverse_powers.buf;
    uint64_t *prefix = self->prefix;
    Py_ssize_t *edges = self->edges;
    Py_ssize_t length = counts->length, n_edges = 0;
    Py_ssize_t class_counts[N_CLASSES] = {0};
    uint64_t sum = 0;
    int previous_separator = 1;  /* as if before the leading padding space */

    prefix[0] = 0;
    for (Py_ssize_t i = 0; i < length; i++) {
        unsigned char byte = bytes[i];
        int separator = self->separator[byte];
        /* Branch-free: every offset is written, the count moves on only where a word starts or ends. */
        edges[n_edges] = i;
        n_edges += separator ^ previous_separator;
        previous_separator = separator;
        unsigned char byte_class = self->byte_class[byte];
        if (byte_class) {  /* rare: skipping uncounted bytes avoids a chain of increments of one counter */
            class_counts[byte_class]++;
        }
        sum += (uint64_t)self->plus_one[byte] * powers[i];
        prefix[i + 1] = sum;
    }
    /* Edges alternate: a word's first byte, the separator after its last byte; the trailing padding
     * space closes the last word. */
    Py_ssize_t n_words = n_edges / 2;
    for (Py_ssize_t k = 0; k < n_words; k++) {
        Py_ssize_t start = edges[2 * k], stop = edges[2 * k + 1];
        self->words[k] = (prefix[stop] - prefix[start]) * inverse[start];
    }
    memcpy(counts->class_counts, class_counts, sizeof class_counts);
    counts->n_words = n_words;
}

/* Fill-in-the-blank slots: " _" followed by one of " .,?'\n", as the sum of bytes.count() of the six
 * patterns. Only " _ " can overlap itself (" _ _ "), and bytes.count() counts non-overlapping matches.
 * The padded text starts with a space, so every "_" has a byte before it. */
static Py_ssize_t
count_blanks(const unsigned char *bytes, Py_ssize_t length)
{
    Py_ssize_t blanks = 0, next_space_blank = 0;
    const unsigned char *end = bytes + length;
    for (const unsigned char *underscore = memchr(bytes + 1, '_', (size_t)(length - 1)); underscore != NULL;
         underscore = memchr(underscore + 1, '_', (size_t)(end - underscore - 1))) {
        Py_ssize_t i = underscore - bytes - 1;  /* where the pattern starts */
        if (bytes[i] != ' ' || i + 2 >= length) {
            continue;
        }
        switch (bytes[i + 2]) {
        case '.': case ',': case '?': case '\'': case '\n':
            blanks++;
            break;
        case ' ':
            if (i >= next_space_blank) {
                blanks++;
                next_space_blank = i + 3;
            }
            break;
        default:
            break;
        }
    }
    return blanks;
}

static inline int
is_space_or_tab(const unsigned char *text, Py_ssize_t at, Py_ssize_t length)
{
    return at < length && (text[at] == ' ' || text[at] == '\t');
}

/* Decodes the UTF-8 character at text[at] (valid UTF-8: it comes from the str); stores its size. */
static Py_UCS4
decode_utf8(const unsigned char *text, Py_ssize_t at, Py_ssize_t length, Py_ssize_t *size)
{
    unsigned char lead = text[at];
    if (lead < 0x80) {
        *size = 1;
        return lead;
    }
    Py_ssize_t n = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
    if (at + n > length) {  /* cannot happen for valid UTF-8; never read past the end */
        *size = 1;
        return 0xFFFD;
    }
    Py_UCS4 code = lead & (0x7F >> n);
    for (Py_ssize_t k = 1; k < n; k++) {
        code = (code << 6) | (text[at + k] & 0x3F);
    }
    *size = n;
    return code;
}

/* A str regex's \d: a Unicode decimal digit (category Nd), as the re module tests it. */
static inline Py_ssize_t
digit_size(const unsigned char *text, Py_ssize_t at, Py_ssize_t length)
{
    Py_ssize_t size;
    if (at >= length) {
        return 0;
    }
    if (text[at] < 0x80) {
        return text[at] >= '0' && text[at] <= '9';
    }
    Py_UCS4 code = decode_utf8(text, at, length, &size);
    return Py_UNICODE_ISDECIMAL(code) ? size : 0;
}

/* byte_tables.py's LINE_START_RE, r"\n[ \t]*+(?:\d{1,2}[.)]|[-*•]|([A-Ea-e])[).:])[ \t]", on the UTF-8
 * bytes of the window. A match holds one newline, its first byte, so each newline is tried alone. */
static void
count_line_starts(const unsigned char *text, Py_ssize_t length, Py_ssize_t *list_items, Py_ssize_t *choices)
{
    const unsigned char *newline = memchr(text, '\n', (size_t)length);
    while (newline != NULL) {
        Py_ssize_t at = newline - text + 1;
        while (is_space_or_tab(text, at, length)) {  /* possessive: no backtracking into it */
            at++;
        }
        if (at < length) {
            unsigned char first = text[at];
            Py_ssize_t digit = digit_size(text, at, length);
            if (digit) {
                /* Greedy \d{1,2} takes a second digit when there is one; backing off to one digit would
                 * need [.)] where that second digit is, so only the longer reading can match. */
                Py_ssize_t next = at + digit;
                next += digit_size(text, next, length);
                if (next < length && (text[next] == '.' || text[next] == ')')) {
                    *list_items += is_space_or_tab(text, next + 1, length);
                }
            }
            else if (first == '-' || first == '*') {
                *list_items += is_space_or_tab(text, at + 1, length);
            }
            else if (first == 0xE2 && at + 2 < length && text[at + 1] == 0x80 && text[at + 2] == 0xA2) {  /* • */
                *list_items += is_space_or_tab(text, at + 3, length);
            }
            else if ((first >= 'A' && first <= 'E') || (first >= 'a' && first <= 'e')) {
                if (at + 1 < length && (text[at + 1] == ')' || text[at + 1] == '.' || text[at + 1] == ':')) {
                    *choices += is_space_or_tab(text, at + 2, length);
                }
            }
        }
        Py_ssize_t from = newline - text + 1;
        newline = memchr(text + from, '\n', (size_t)(length - from));
    }
}

/* Byte n-grams of the padded text: the hash of the n bytes from i is a difference of prefix sums. */
static void
emit_char_ngrams(const NativeFeatures *self, Py_ssize_t length, Sink *sink)
{
    const uint64_t *inverse = self->inverse_powers.buf;
    const uint64_t *prefix = self->prefix;
    Sink local = *sink;  /* a local copy: its sums can stay in registers */
    for (int k = 0; k < self->n_char_ngrams; k++) {
        Py_ssize_t n = self->char_ngrams[k];
        uint64_t salt = self->char_salts[k];
        for (Py_ssize_t i = 0; i + n <= length; i++) {
            emit(&local, ((prefix[i + n] - prefix[i]) * inverse[i]) ^ salt, 0);
        }
    }
    *sink = local;
}

/* Words, then word pairs (made of the unsalted word hashes), each salted: the order of transform_one. */
static void
emit_words(const NativeFeatures *self, Py_ssize_t n_words, Sink *sink)
{
    const uint64_t *words = self->words;
    Sink local = *sink;  /* a local copy: its sums can stay in registers */
    if (self->with_words) {
        for (Py_ssize_t k = 0; k < n_words; k++) {
            emit(&local, words[k] ^ self->word_salt, 1);
        }
    }
    if (self->with_pairs) {
        for (Py_ssize_t k = 0; k + 1 < n_words; k++) {
            emit(&local, (words[k] * PAIR + words[k + 1]) ^ self->pair_salt, 1);
        }
    }
    *sink = local;
}

/* Everything of one window, into counts and sink. Raises (returns -1) on a lone surrogate or a window
 * longer than the tables. Runs no Python code after the UTF-8 encoding, so the scratch is safe. */
int
compute(NativeFeatures *self, PyObject *window, TextCounts *counts, Sink *sink)
{
    Py_ssize_t size;
    const char *utf8 = PyUnicode_AsUTF8AndSize(window, &size);  /* strict: same error as .encode() */
    if (utf8 == NULL) {
        return -1;
    }
    if (size > self->capacity - 2) {  /* the padded text indexes the tables */
        PyErr_Format(PyExc_ValueError, "window of %zd UTF-8 bytes is longer than the tables allow (%zd)",
                     size, self->capacity - 2);
        return -1;
    }
    memset(counts, 0, sizeof *counts);
    counts->length = size + 2;
    self->padded[0] = ' ';
    memcpy(self->padded + 1, utf8, (size_t)size);
    self->padded[size + 1] = ' ';

    scan_bytes(self, counts);
    Py_ssize_t n_bytes = size;
    counts->with_chars = (double)counts->class_counts[CLASS_NON_ASCII] >= self->char_min_non_ascii * (double)n_bytes;
    counts->blanks = count_blanks(self->padded, counts->length);
    count_line_starts((const unsigned char *)utf8, size, &counts->list_items, &counts->choices);

    if (counts->with_chars) {
        emit_char_ngrams(self, counts->length, sink);
    }
    emit_words(self, counts->n_words, sink);
    return 0;
}

/* The dense signals in DENSE_FEATURE_NAMES order, into dense; returns their number. math.log1p is
 * libm's log1p, and int / int in Python is the correctly rounded quotient, as here. */
Py_ssize_t
dense_signals(const NativeFeatures *self, const TextCounts *counts, const Sink *sink, Py_ssize_t n_chars,
              Py_ssize_t examples, double *dense)
{
    Py_ssize_t n_bytes = counts->length - 2;
    const Py_ssize_t *classes = counts->class_counts;
    dense[0] = log1p((double)n_chars);
    dense[1] = log1p((double)classes[CLASS_NEWLINE]);
    dense[2] = counts->n_words ? 0.0 : 1.0;
    dense[3] = n_bytes ? (double)classes[CLASS_NON_ASCII] / (double)n_bytes : 0.0;
    dense[4] = log1p((double)classes[CLASS_DIGIT]);
    dense[5] = log1p((double)classes[CLASS_MATH]);
    dense[6] = log1p((double)classes[CLASS_CODE]);
    dense[7] = log1p((double)classes[CLASS_QUESTION]);
    dense[8] = log1p((double)counts->list_items);
    dense[9] = log1p((double)counts->choices);
    dense[10] = log1p((double)examples);
    dense[11] = log1p((double)counts->blanks);
    for (int k = 0; k < self->n_lexicon; k++) {
        dense[N_BASE_DENSE + k] = log1p((double)sink->lexicon_counts[k + 1]);
    }
    return N_BASE_DENSE + self->n_lexicon;
}
