/* UdpReader: a UDP socket's reader for the event loop (part of the _netio extension).
 *
 * server.UdpListener subclasses it. The loop calls the reader itself when the
 * socket is readable: it receives a batch and sends what the answer cache
 * replays (serve_batch, _replay.c), asking `admit` (the rate limiter's, or None)
 * for each reply with the clock read here, and calls the Python half only when
 * something is left: _rest(state, now, rest, refused, dropped, errno) for the
 * datagrams the Python path answers; _failed(exc) for an error. With `replay`
 * off (the socket-module I/O) it calls _serve().
 *
 * Why C: the Python frame around serve() (the state, the limiter, the clock, a
 * tuple unpacked, four empty checks) cost ~1.5 us per batch, and at 20,000 q/s a
 * batch is one or two datagrams (15.1 -> 13.6 us per static hit, NSD 12.5).
 */
#include "_netio.h"

#include <structmember.h>

typedef struct {
    PyObject_HEAD
    int fd;
    int replay;      /* serve in C (the batched I/O) */
    PyObject *state; /* callable: the serving state (its .cache) */
    PyObject *stats; /* handler.Stats */
    PyObject *admit; /* the rate limiter's admit(host, now), or None */
} Reader;

static PyObject *s_serve, *s_failed, *s_cache, *zero;

static int
reader_traverse(PyObject *op, visitproc visit, void *arg)
{
    Reader *self = (Reader *)op;
    Py_VISIT(self->state);
    Py_VISIT(self->stats);
    Py_VISIT(self->admit);
    return 0;
}

static int
reader_clear(PyObject *op)
{
    Reader *self = (Reader *)op;
    Py_CLEAR(self->state);
    Py_CLEAR(self->stats);
    Py_CLEAR(self->admit);
    return 0;
}

static void
reader_dealloc(PyObject *op)
{
    PyObject_GC_UnTrack(op);
    reader_clear(op);
    Py_TYPE(op)->tp_free(op);
}

static PyObject *
reader_call(PyObject *op, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwargs))
{
    Reader *self = (Reader *)op;
    if (!self->replay || self->state == NULL || self->stats == NULL)
        return PyObject_CallMethodNoArgs(op, s_serve);
    PyObject *state = PyObject_CallNoArgs(self->state);
    PyObject *cache = state == NULL ? NULL : PyObject_GetAttr(state, s_cache);
    int limited = self->admit != NULL && self->admit != Py_None;
    PyObject *now = cache == NULL ? NULL : limited ? PyFloat_FromDouble(monotonic()) : Py_NewRef(zero);
    struct batch batch;
    int status = now == NULL ? -1 : serve_batch(self->fd, cache, self->stats, self->admit, now, &batch);
    Py_XDECREF(cache);
    PyObject *result;
    if (status < 0) {
        result = pass_error(op, s_failed);
    } else if (PyList_GET_SIZE(batch.rest) == 0 && PyList_GET_SIZE(batch.refused) == 0 && batch.dropped == 0) {
        result = Py_NewRef(Py_None); /* all of it replayed and sent */
    } else {
        result = PyObject_CallMethod(op, "_rest", "OOOOii", state, now, batch.rest, batch.refused, batch.dropped,
                                     batch.error);
    }
    if (status == 0) {
        Py_DECREF(batch.rest);
        Py_DECREF(batch.refused);
    }
    Py_XDECREF(now);
    Py_XDECREF(state);
    return result;
}

static PyMemberDef reader_members[] = {
    {"fd", T_INT, offsetof(Reader, fd), 0, "the UDP socket"},
    {"replay", T_INT, offsetof(Reader, replay), 0, "serve in C when readable"},
    {"state", T_OBJECT_EX, offsetof(Reader, state), 0, "the serving state getter"},
    {"stats", T_OBJECT_EX, offsetof(Reader, stats), 0, "the counters"},
    {"admit", T_OBJECT, offsetof(Reader, admit), 0, "the rate limiter's admit(host, now), or None"},
    {NULL, 0, 0, 0, NULL},
};

HIDDEN PyTypeObject udpreader_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "geodns.dns._netio.UdpReader",
    .tp_doc = "A UDP socket's reader: the loop calls it when the socket is readable.",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = reader_dealloc,
    .tp_traverse = reader_traverse,
    .tp_clear = reader_clear,
    .tp_call = reader_call,
    .tp_members = reader_members,
};

HIDDEN int
udpreader_ready(void)
{
    static const char *names[] = {"_serve", "_failed", "cache"};
    PyObject **interned[] = {&s_serve, &s_failed, &s_cache};
    if (intern_all(names, interned, sizeof names / sizeof *names) < 0)
        return -1;
    if (zero == NULL && (zero = PyFloat_FromDouble(0.0)) == NULL)
        return -1;
    return PyType_Ready(&udpreader_type);
}
