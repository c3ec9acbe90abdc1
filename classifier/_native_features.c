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
 * This file is the module and the NativeFeatures methods; the object is made and its tables checked in
 * _native_features_tables.c, and the scan of a window is in _native_features_scan.c.
 */
#include "_native_features.h"

#include <math.h>
#include <string.h>


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
