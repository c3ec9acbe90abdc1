/* Making a NativeFeatures object (classifier._native_features): every table Python passes is checked
 * once here, so the per-query scan (_native_features_scan.c) can index them without checks.
 */
#include "_native_features.h"

#include <string.h>

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

void
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

PyObject *
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
