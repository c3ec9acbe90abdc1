/* What the files of classifier._native_features share: the NativeFeatures object, what one window
 * yields, and the functions one file calls in another.
 *
 *   _native_features.c         the module, the type and its methods logits() and indices()
 *   _native_features_tables.c  making the object: every table Python passes, checked once
 *   _native_features_scan.c    one window's byte scan, n-gram hashes, weight sums and dense signals
 *
 * The per-byte and per-hash loops and their inline helpers are all in _native_features_scan.c, so no
 * call inside a loop crosses files: logits() makes two such calls per query.
 */
#ifndef CLASSIFIER_NATIVE_FEATURES_H
#define CLASSIFIER_NATIVE_FEATURES_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

/* Fibonacci hashing: the top bits of h * MIX are well spread. Same constants as classifier/byte_tables.py. */
#define MIX UINT64_C(0x9E3779B97F4A7C15)
/* Combines two word hashes into a word-pair hash. */
#define PAIR UINT64_C(0xD6E8FEB86659FD93)

#define MAX_CHAR_NGRAMS 8
#define MAX_LEXICON 64
/* Byte class codes of the translate table, in DENSE_FEATURE_NAMES order. */
enum { CLASS_NEWLINE = 1, CLASS_NON_ASCII, CLASS_DIGIT, CLASS_MATH, CLASS_CODE, CLASS_QUESTION, N_CLASSES };
/* Dense signals before the lexicon counts (see DENSE_FEATURE_NAMES). */
#define N_BASE_DENSE 12

/* Functions shared between these files only: hidden, so the .so exports nothing more and calls to them
 * are direct rather than through the PLT. */
#if defined(__GNUC__)
#define NATIVE_INTERNAL __attribute__((visibility("hidden")))
#else
#define NATIVE_INTERNAL
#endif

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

/* The type's tp_new and tp_dealloc (_native_features_tables.c). */
NATIVE_INTERNAL PyObject *NativeFeatures_new(PyTypeObject *type, PyObject *args, PyObject *kwargs);
NATIVE_INTERNAL void NativeFeatures_dealloc(NativeFeatures *self);

/* One window's counts and hashes; -1 with an exception set on a bad window. */
NATIVE_INTERNAL int compute(NativeFeatures *self, PyObject *window, TextCounts *counts, Sink *sink);

/* Into dense (room for N_BASE_DENSE + MAX_LEXICON); returns how many were written. */
NATIVE_INTERNAL Py_ssize_t dense_signals(const NativeFeatures *self, const TextCounts *counts, const Sink *sink,
                                         Py_ssize_t n_chars, Py_ssize_t examples, double *dense);

#endif
