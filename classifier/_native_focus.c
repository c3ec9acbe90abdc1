/* The few-shot detection of classifier/text.py (`_focus_final_item_python`) in C.
 *
 * It must give exactly the Python result for every str, since the shipped weights were trained on it:
 * each regex is reproduced by a hand-written scanner (possessive parts give nothing back, the greedy
 * `\s*` of the block heads does) with `findall`'s non-overlapping semantics, and str.find / rfind
 * with their slice-style start and end. Offsets are code points, as in Python's slicing.
 *
 * The scanned end of the text is copied once into a UCS4 buffer laid out as the Python `padded`
 * string ("\n\n" + region + "\n\n"); `lined` ("\n" + region) and `region` are views into it.
 *
 * This file is the module: focus_final_item's checks, the focused text and the FocusedText it returns.
 * The buffer and the regex scanners are in _native_focus_scan.c, the detection rules in
 * _native_focus_rules.c.
 */
#include "_native_focus.h"

#include <string.h>

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
