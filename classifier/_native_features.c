/* The single-query path of classifier/features.py (Featurizer.transform_one) and classifier/scorer.py
 * (QueryScorer.logits_one, before its booster) in one C call.
 *
 * For one already-windowed text this computes the bucket of every hashed n-gram (byte n-grams, words,
 * word pairs) and the dense signals bit for bit as transform_one does: same polynomial hash over the
 * space-padded UTF-8 bytes, same salts, same Fibonacci hashing, same byte classes and line-start rules.
 * Then the linear heads' logits: the weight rows of the buckets are summed in double, where numpy sums
 * float32 rows with a BLAS sdot, so logits differ from the numpy path by about 1e-6 (up to ~2e-4 on long
 * repetitive texts, where the float32 sum loses most; this one matches a double reference). Every table
 * (powers, salts, byte classes, lexicon, weights) comes from Python once, when the NativeFeatures
 * object is made, so the two implementations share their constants.
 *
 * All hash arithmetic is uint64 and wraps modulo 2**64, exactly like numpy's uint64 arrays.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Fibonacci hashing: the top bits of h * MIX are well spread. Same constants as features.py. */
#define MIX UINT64_C(0x9E3779B97F4A7C15)
/* Combines two word hashes into a word-pair hash. */
#define PAIR UINT64_C(0xD6E8FEB86659FD93)

#define MAX_CHAR_NGRAMS 8
#define MAX_LEXICON 64
/* Byte class codes of the translate table, in DENSE_FEATURE_NAMES order. */
enum { CLASS_NEWLINE = 1, CLASS_NON_ASCII, CLASS_DIGIT, CLASS_MATH, CLASS_CODE, CLASS_QUESTION, N_CLASSES };
/* Dense signals before the lexicon counts (see DENSE_FEATURE_NAMES). */
#define N_BASE_DENSE 12

typedef struct {
    PyObject_HEAD
    unsigned char byte_class[256];  /* byte -> class code (0 = uncounted) */
    unsigned char separator[256];   /* byte -> 1 if it separates words */
    unsigned char plus_one[256];    /* byte -> ASCII-lowered byte + 1: the hash's digit */
    Py_buffer powers;               /* uint64 BASE**i, i < capacity */
    Py_buffer inverse_powers;       /* uint64 BASE**-i modulo 2**64 */
    Py_buffer lexicon;              /* uint8 bucket -> lexicon category (1-based; 0 = none) */
    Py_buffer weights;              /* float32 (n_buckets, 2), or obj NULL when not given */
    Py_buffer dense_rows;           /* float64 (n_dense, 4): low, high, difficulty and stakes weight */
    double bias_difficulty, bias_stakes;
    Py_ssize_t capacity;            /* entries of the power tables: the longest padded text + 1 */
    int n_char_ngrams;
    Py_ssize_t char_ngrams[MAX_CHAR_NGRAMS];
    uint64_t char_salts[MAX_CHAR_NGRAMS];
    uint64_t word_salt, pair_salt;
    int with_words, with_pairs;
    int shift;                      /* 64 - buckets_log2 */
    int n_lexicon;
    double char_min_non_ascii;
    /* Scratch, capacity-sized: only used while the GIL is held and no Python code runs. */
    unsigned char *padded;
    uint64_t *prefix;               /* capacity + 1 prefix sums */
    uint64_t *words;                /* unsalted word hashes */
    Py_ssize_t *edges;              /* offsets where words start and end */
} NativeFeatures;

/* What one text yields besides the hashes themselves. */
typedef struct {
    Py_ssize_t length;              /* padded bytes: " " + window + " " */
    Py_ssize_t class_counts[N_CLASSES];
    Py_ssize_t n_words;
    Py_ssize_t blanks;
    Py_ssize_t list_items, choices;
    int with_chars;
} TextCounts;

/* Where emitted buckets go: summed weight rows, lexicon counts, optionally the buckets themselves. */
typedef struct {
    const float *weights;           /* NULL: no sums */
    const unsigned char *lexicon;
    int shift;
    double sum_difficulty, sum_stakes;
    Py_ssize_t n_hashes;
    Py_ssize_t lexicon_counts[MAX_LEXICON + 1];
    int64_t *indices;               /* NULL: not recorded */
} Sink;

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

/* features.py's _LINE_START_RE, r"\n[ \t]*+(?:\d{1,2}[.)]|[-*•]|([A-Ea-e])[).:])[ \t]", on the UTF-8
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
static int
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
static Py_ssize_t
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

static PyObject *
float_list(const double *values, Py_ssize_t n)
{
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *value = PyFloat_FromDouble(values[k]);
        if (value == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, k, value);
    }
    return list;
}

static int
parse_call(PyObject *const *args, Py_ssize_t nargs, const char *name, Py_ssize_t *n_chars, Py_ssize_t *examples)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "%s() takes 3 arguments (window, n_chars, examples), got %zd", name, nargs);
        return -1;
    }
    if (!PyUnicode_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "%s(): window must be str", name);
        return -1;
    }
    *n_chars = PyLong_AsSsize_t(args[1]);
    if (*n_chars == -1 && PyErr_Occurred()) {
        return -1;
    }
    *examples = PyLong_AsSsize_t(args[2]);
    if (*examples == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (*n_chars < 0 || *examples < 0) { /* math.log1p of a negative count raises in the Python path */
        PyErr_Format(PyExc_ValueError, "%s(): n_chars and examples must be >= 0", name);
        return -1;
    }
    return 0;
}

static void
init_sink(const NativeFeatures *self, Sink *sink, int with_weights)
{
    memset(sink, 0, sizeof *sink);
    sink->weights = with_weights ? self->weights.buf : NULL;
    sink->lexicon = self->lexicon.buf;
    sink->shift = self->shift;
}

PyDoc_STRVAR(logits_doc,
"logits(window, n_chars, examples) -> (z_difficulty, z_stakes, dense)\n\n"
"The raw logits of both linear heads for one window, as QueryScorer.logits_one computes them before\n"
"its booster: bias, plus the dense signals clipped to [low, high] times their weights, plus the sum\n"
"of the hashed weights over the square root of their number; and the (unclipped) dense signals.\n"
"`n_chars` is the focused text's length and `examples` its number of worked examples.");

static PyObject *
NativeFeatures_logits(NativeFeatures *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t n_chars, examples;
    TextCounts counts;
    Sink sink;
    double dense[N_BASE_DENSE + MAX_LEXICON];
    if (self->weights.obj == NULL || self->dense_rows.obj == NULL) {
        PyErr_SetString(PyExc_ValueError, "logits() needs hashed_weights and dense_rows: pass them when creating it");
        return NULL;
    }
    if (parse_call(args, nargs, "logits", &n_chars, &examples) < 0) {
        return NULL;
    }
    init_sink(self, &sink, 1);
    if (compute(self, args[0], &counts, &sink) < 0) {
        return NULL;
    }
    Py_ssize_t n_dense = dense_signals(self, &counts, &sink, n_chars, examples, dense);
    /* In logits_one's order: bias, dense terms one by one, then the hashed sum. */
    const double *rows = self->dense_rows.buf;
    double z_difficulty = self->bias_difficulty, z_stakes = self->bias_stakes;
    for (Py_ssize_t k = 0; k < n_dense; k++) {
        double low = rows[4 * k], high = rows[4 * k + 1], value = dense[k];
        double clipped = value < low ? low : value > high ? high : value;
        z_difficulty += clipped * rows[4 * k + 2];
        z_stakes += clipped * rows[4 * k + 3];
    }
    if (sink.n_hashes) {
        double scale = 1.0 / sqrt((double)sink.n_hashes);
        z_difficulty += sink.sum_difficulty * scale;
        z_stakes += sink.sum_stakes * scale;
    }
    PyObject *dense_values = float_list(dense, n_dense);
    if (dense_values == NULL) {
        return NULL;
    }
    return Py_BuildValue("ddN", z_difficulty, z_stakes, dense_values);
}

PyDoc_STRVAR(indices_doc,
"indices(window, n_chars, examples) -> (buckets, dense)\n\n"
"The bucket of every hashed n-gram in transform_one's order, as native int64 bytes, and the dense\n"
"signals (for tests comparing this module with the numpy implementation).");

static PyObject *
NativeFeatures_indices(NativeFeatures *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t n_chars, examples;
    TextCounts counts;
    Sink sink;
    if (parse_call(args, nargs, "indices", &n_chars, &examples) < 0) {
        return NULL;
    }
    /* At most every byte starts one n-gram of each length, plus a word and a pair per two bytes. */
    Py_ssize_t most = self->capacity * (self->n_char_ngrams + 1);
    int64_t *indices = PyMem_Malloc((size_t)most * sizeof *indices);
    if (indices == NULL) {
        return PyErr_NoMemory();
    }
    init_sink(self, &sink, 0);
    sink.indices = indices;
    PyObject *buckets = NULL;
    if (compute(self, args[0], &counts, &sink) == 0) {
        buckets = PyBytes_FromStringAndSize((const char *)indices, sink.n_hashes * (Py_ssize_t)sizeof *indices);
    }
    PyMem_Free(indices);
    if (buckets == NULL) {
        return NULL;
    }
    double dense[N_BASE_DENSE + MAX_LEXICON];
    PyObject *dense_values = float_list(dense, dense_signals(self, &counts, &sink, n_chars, examples, dense));
    if (dense_values == NULL) {
        Py_DECREF(buckets);
        return NULL;
    }
    return Py_BuildValue("NN", buckets, dense_values);
}

/* Setup: validation of every table, once. */

static int
copy_byte_table(PyObject *table, unsigned char *out, const char *name, int max_value)
{
    if (!PyBytes_Check(table) || PyBytes_GET_SIZE(table) != 256) {
        PyErr_Format(PyExc_ValueError, "%s must be bytes of length 256", name);
        return -1;
    }
    memcpy(out, PyBytes_AS_STRING(table), 256);
    for (int byte = 0; byte < 256; byte++) {
        if (out[byte] > max_value) {
            PyErr_Format(PyExc_ValueError, "%s: value %d of byte %d is above %d", name, out[byte], byte, max_value);
            return -1;
        }
    }
    return 0;
}

/* A C-contiguous buffer of `length` items of `itemsize` bytes whose format is one of `formats`. */
static int
get_table(PyObject *object, Py_buffer *view, const char *name, Py_ssize_t itemsize, const char *formats,
          Py_ssize_t length)
{
    if (PyObject_GetBuffer(object, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        return -1;
    }
    const char *format = view->format;
    if (format[0] == '<' || format[0] == '=' || format[0] == '@') {
        format++;  /* native little-endian machines only: numpy marks its dtypes like this */
    }
    if (view->itemsize != itemsize || strlen(format) != 1 || strchr(formats, format[0]) == NULL
        || view->len != length * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd contiguous items of format %s and size %zd, got format %s, "
                     "item size %zd, %zd bytes", name, length, formats, itemsize, view->format, view->itemsize,
                     view->len);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int
parse_salts(PyObject *ngrams, PyObject *salts, NativeFeatures *self)
{
    PyObject *ngram_seq = PySequence_Fast(ngrams, "char_ngrams must be a sequence");
    if (ngram_seq == NULL) {
        return -1;
    }
    PyObject *salt_seq = PySequence_Fast(salts, "char_salts must be a sequence");
    if (salt_seq == NULL) {
        Py_DECREF(ngram_seq);
        return -1;
    }
    int status = -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(ngram_seq);
    if (n > MAX_CHAR_NGRAMS || n != PySequence_Fast_GET_SIZE(salt_seq)) {
        PyErr_Format(PyExc_ValueError, "need as many char_salts as char_ngrams, at most %d", MAX_CHAR_NGRAMS);
        goto done;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t length = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(ngram_seq, k));
        if (length == -1 && PyErr_Occurred()) {
            goto done;
        }
        if (length < 1 || length > self->capacity) {
            PyErr_Format(PyExc_ValueError, "char n-gram length %zd out of range", length);
            goto done;
        }
        unsigned long long salt = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(salt_seq, k));
        if (salt == (unsigned long long)-1 && PyErr_Occurred()) {
            goto done;
        }
        self->char_ngrams[k] = length;
        self->char_salts[k] = (uint64_t)salt;
    }
    self->n_char_ngrams = (int)n;
    status = 0;
done:
    Py_DECREF(ngram_seq);
    Py_DECREF(salt_seq);
    return status;
}

static void
NativeFeatures_dealloc(NativeFeatures *self)
{
    /* Only what this object acquired: a view's obj is NULL until its GetBuffer succeeded. */
    if (self->powers.obj != NULL) {
        PyBuffer_Release(&self->powers);
    }
    if (self->inverse_powers.obj != NULL) {
        PyBuffer_Release(&self->inverse_powers);
    }
    if (self->lexicon.obj != NULL) {
        PyBuffer_Release(&self->lexicon);
    }
    if (self->weights.obj != NULL) {
        PyBuffer_Release(&self->weights);
    }
    if (self->dense_rows.obj != NULL) {
        PyBuffer_Release(&self->dense_rows);
    }
    PyMem_Free(self->padded);
    PyMem_Free(self->prefix);
    PyMem_Free(self->words);
    PyMem_Free(self->edges);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
NativeFeatures_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {
        "byte_classes", "separators", "lower_plus_one", "powers", "inverse_powers", "lexicon", "n_lexicon",
        "char_ngrams", "char_salts", "word_salt", "pair_salt", "with_words", "with_pairs", "buckets_log2",
        "char_min_non_ascii", "hashed_weights", "dense_rows", "bias", NULL,
    };
    PyObject *byte_classes, *separators, *lower_plus_one, *powers, *inverse_powers, *lexicon;
    PyObject *char_ngrams, *char_salts, *weights = Py_None, *dense_rows = Py_None;
    unsigned long long word_salt, pair_salt;
    int n_lexicon, with_words, with_pairs, buckets_log2;
    double char_min_non_ascii, bias_difficulty = 0.0, bias_stakes = 0.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOiOOKKppid|OO(dd)", keywords, &byte_classes, &separators,
                                     &lower_plus_one, &powers, &inverse_powers, &lexicon, &n_lexicon,
                                     &char_ngrams, &char_salts, &word_salt, &pair_salt, &with_words,
                                     &with_pairs, &buckets_log2, &char_min_non_ascii, &weights, &dense_rows,
                                     &bias_difficulty, &bias_stakes)) {
        return NULL;
    }
    if (buckets_log2 < 1 || buckets_log2 > 32) {
        PyErr_Format(PyExc_ValueError, "buckets_log2 must be in 1..32, got %d", buckets_log2);
        return NULL;
    }
    if (n_lexicon < 0 || n_lexicon > MAX_LEXICON) {
        PyErr_Format(PyExc_ValueError, "n_lexicon must be in 0..%d, got %d", MAX_LEXICON, n_lexicon);
        return NULL;
    }
    NativeFeatures *self = (NativeFeatures *)type->tp_alloc(type, 0);  /* zeroed: views have obj NULL */
    if (self == NULL) {
        return NULL;
    }
    Py_ssize_t n_buckets = (Py_ssize_t)1 << buckets_log2;
    self->shift = 64 - buckets_log2;
    self->n_lexicon = n_lexicon;
    self->word_salt = (uint64_t)word_salt;
    self->pair_salt = (uint64_t)pair_salt;
    self->with_words = with_words;
    self->with_pairs = with_pairs;
    self->char_min_non_ascii = char_min_non_ascii;
    self->bias_difficulty = bias_difficulty;
    self->bias_stakes = bias_stakes;
    if (copy_byte_table(byte_classes, self->byte_class, "byte_classes", N_CLASSES - 1) < 0
        || copy_byte_table(separators, self->separator, "separators", 1) < 0
        || copy_byte_table(lower_plus_one, self->plus_one, "lower_plus_one", 255) < 0) {
        goto error;
    }
    if (PyObject_GetBuffer(powers, &self->powers, PyBUF_SIMPLE) < 0) {
        goto error;
    }
    self->capacity = self->powers.len / 8;
    PyBuffer_Release(&self->powers);  /* re-acquired with its format checked below */
    if (self->capacity < 3) {
        PyErr_SetString(PyExc_ValueError, "power tables are too short");
        goto error;
    }
    if (get_table(powers, &self->powers, "powers", 8, "QL", self->capacity) < 0
        || get_table(inverse_powers, &self->inverse_powers, "inverse_powers", 8, "QL", self->capacity) < 0
        || get_table(lexicon, &self->lexicon, "lexicon", 1, "BbcC", n_buckets) < 0) {
        goto error;
    }
    const unsigned char *categories = self->lexicon.buf;
    for (Py_ssize_t bucket = 0; bucket < n_buckets; bucket++) {
        if (categories[bucket] > n_lexicon) {
            PyErr_Format(PyExc_ValueError, "lexicon: category %d of bucket %zd is above %d", categories[bucket],
                         bucket, n_lexicon);
            goto error;
        }
    }
    if (weights != Py_None && get_table(weights, &self->weights, "hashed_weights", 4, "f", 2 * n_buckets) < 0) {
        goto error;
    }
    if (dense_rows != Py_None
        && get_table(dense_rows, &self->dense_rows, "dense_rows", 8, "d", 4 * (N_BASE_DENSE + n_lexicon)) < 0) {
        goto error;
    }
    if (parse_salts(char_ngrams, char_salts, self) < 0) {
        goto error;
    }
    self->padded = PyMem_Malloc((size_t)self->capacity);
    self->prefix = PyMem_Malloc((size_t)(self->capacity + 1) * sizeof(uint64_t));
    self->words = PyMem_Malloc((size_t)self->capacity * sizeof(uint64_t));
    self->edges = PyMem_Malloc((size_t)self->capacity * sizeof(Py_ssize_t));
    if (self->padded == NULL || self->prefix == NULL || self->words == NULL || self->edges == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    return (PyObject *)self;
error:
    Py_DECREF(self);
    return NULL;
}

static PyMethodDef NativeFeatures_methods[] = {
    {"logits", (PyCFunction)(void (*)(void))NativeFeatures_logits, METH_FASTCALL, logits_doc},
    {"indices", (PyCFunction)(void (*)(void))NativeFeatures_indices, METH_FASTCALL, indices_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(NativeFeatures_doc,
"NativeFeatures(*, byte_classes, separators, lower_plus_one, powers, inverse_powers, lexicon, n_lexicon,\n"
"               char_ngrams, char_salts, word_salt, pair_salt, with_words, with_pairs, buckets_log2,\n"
"               char_min_non_ascii, hashed_weights=None, dense_rows=None, bias=(0.0, 0.0))\n\n"
"Featurizer.transform_one's features of one window and, given a scorer's weights, its logits, in C.\n"
"Build it with Featurizer.native_features().");

static PyTypeObject NativeFeaturesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "classifier._native_features.NativeFeatures",
    .tp_basicsize = sizeof(NativeFeatures),
    .tp_dealloc = (destructor)NativeFeatures_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = NativeFeatures_doc,
    .tp_methods = NativeFeatures_methods,
    .tp_new = NativeFeatures_new,
};

static struct PyModuleDef native_features_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "classifier._native_features",
    .m_doc = "C implementation of the classifier's single-query features (see classifier/features.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__native_features(void)
{
    if (PyType_Ready(&NativeFeaturesType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&native_features_module);
    if (module == NULL) {
        return NULL;
    }
    /* The constants compiled in, for Python to refuse a build older than features.py. */
    PyObject *mix = PyLong_FromUnsignedLongLong(MIX), *pair = PyLong_FromUnsignedLongLong(PAIR);
    int failed = mix == NULL || pair == NULL || PyModule_AddObjectRef(module, "MIX", mix) < 0
                 || PyModule_AddObjectRef(module, "PAIR", pair) < 0
                 || PyModule_AddIntConstant(module, "N_BASE_DENSE", N_BASE_DENSE) < 0
                 || PyModule_AddObjectRef(module, "NativeFeatures", (PyObject *)&NativeFeaturesType) < 0;
    Py_XDECREF(mix);
    Py_XDECREF(pair);
    if (failed) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
