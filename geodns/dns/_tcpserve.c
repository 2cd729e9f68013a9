/* The answer cache's replay over a DNS-over-TCP connection (part of the _netio extension).
 *
 * TcpSession, the C half of tcp.TcpConnection (which subclasses it). The loop
 * calls the session when its socket is readable: it reads once what the kernel
 * holds, splits the 2-byte length framing (RFC 7766) of what `buf` (bytes of the
 * connection not yet answered) and the read hold together, and answers from
 * cache.tcp, in order, the complete messages whose replies the cache can replay
 * as they stand (as _replay.c does for UDP: the exact bytes, a random answer's
 * variants in turn, a geo answer per placed ECS subnet, the lowered name for
 * 0x20), at most `batch` of them. The replies go out with one sendmsg from pieces
 * (length, ID, kept reply, the client's spelling or subnet), counted in `stats`
 * as the Python path counts them. It stops at the first message it cannot
 * replay, a frame shorter than a header, or a partial message: what is left
 * stays in `buf` for the Python half, which answers misses, keeps the timers and
 * limits, and closes. session.serve(cache, stats, limit, read, hold) is the same
 * replay for the Python half (`hold`: replies wait in its queue already, so the
 * new ones come back as bytes to queue behind them).
 *
 * Why C: through uvloop's stream transport a cached TCP answer cost ~9 us of
 * Python and loop per message above the kernel's own work (a bytes object per
 * read, the protocol callback, one write per reply, the timers): 1.8x NSD.
 */
#include "_netio.h"

#include <structmember.h>
#include <sys/uio.h>

#define TCP_READ 65536  /* one read per readiness, as a stream transport reads */
#define TCP_SLOTS SLOTS /* messages per call at most (the caller's limit is lower) */

static char input[TCP_READ];

/* Append d[0:n] to the bytearray. */
static int
append(PyObject *buf, const char *d, Py_ssize_t n)
{
    Py_ssize_t had = PyByteArray_GET_SIZE(buf);
    if (n == 0)
        return 0;
    if (PyByteArray_Resize(buf, had + n) < 0)
        return -1;
    memcpy(PyByteArray_AS_STRING(buf) + had, d, (size_t)n);
    return 0;
}

/* The bytes of v[0:count] from offset `skip` on, as one bytes object. */
static PyObject *
rest_of(const struct iovec *v, int count, size_t skip)
{
    size_t total = 0;
    for (int i = 0; i < count; i++)
        total += v[i].iov_len;
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(total - skip));
    if (bytes == NULL)
        return NULL;
    char *to = PyBytes_AS_STRING(bytes);
    for (int i = 0; i < count; i++) {
        size_t len = v[i].iov_len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        memcpy(to, (const char *)v[i].iov_base + skip, len - skip);
        to += len - skip;
        skip = 0;
    }
    return bytes;
}

/* Read once: bytes read, 0 when none wait; *closed set on end of stream or an error. */
static Py_ssize_t
read_once(int fd, int *closed)
{
    for (;;) {
        ssize_t got = recv(fd, input, sizeof input, MSG_DONTWAIT);
        if (got > 0)
            return got;
        if (got == 0) {
            *closed = -1;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            *closed = errno;
        return 0;
    }
}

/* What one serve() did: messages answered, replies the kernel did not take (a new
 * reference or NULL), and `closed` (0; -1 end of stream; an errno). */
struct served {
    int answered;
    PyObject *unsent;
    int closed;
};

/* Read (when `read`), answer from `cache` the complete messages of `buf` it can
 * replay, at most `limit`, and send them (unless `hold`). -1 with a Python error set
 * (what was answered before the error is sent and consumed all the same). */
static int
serve(int fd, PyObject *buf, PyObject *cache, PyObject *stats, int limit, int read, int hold, struct served *out)
{
    *out = (struct served){0, NULL, 0};
    if (!PyByteArray_CheckExact(buf)) {
        PyErr_SetString(PyExc_TypeError, "the connection's buffer must be a bytearray");
        return -1;
    }
    if (limit > TCP_SLOTS)
        limit = TCP_SLOTS;
    struct view view;
    if (view_open(&view, cache, 0, stats) < 0) {
        view_close(&view);
        return -1;
    }
    int closed = 0;
    Py_ssize_t got = read ? read_once(fd, &closed) : 0;
    /* The messages: straight from the read, or after the bytes a previous call left. */
    int buffered = PyByteArray_GET_SIZE(buf) > 0;
    if (buffered && append(buf, input, got) < 0) {
        view_close(&view);
        return -1;
    }
    const char *d = buffered ? PyByteArray_AS_STRING(buf) : input;
    Py_ssize_t n = buffered ? PyByteArray_GET_SIZE(buf) : got, at = 0;

    struct iovec pieces[TCP_SLOTS * (PIECES + 1)];
    unsigned char lengths[TCP_SLOTS][2];
    PyObject *held[TCP_SLOTS]; /* the cached replies the iovecs point into, alive until sent */
    struct tally tally; /* counts[] filled as kinds grow: an initializer would clear all 1 KiB of it */
    tally.kinds = tally.hits = 0;
    int answered = 0, used = 0, failed = 0;
    while (answered < limit && n - at >= 2) {
        Py_ssize_t size = (unsigned char)d[at] << 8 | (unsigned char)d[at + 1];
        if (size < 12 || n - at - 2 < size) /* short frames and partial messages: Python's */
            break;
        const char *message = d + at + 2;
        struct hit hit;
        if (replay_lookup(message, size, view.table, view.subnet_keys, &hit) < 0) {
            failed = 1;
            break;
        }
        if (hit.reply == NULL)
            break;
        int status = tally_add(&tally, message, size, &hit, view.geo);
        Py_XDECREF(hit.steered);
        if (status < 0) {
            Py_DECREF(hit.reply);
            failed = 1;
            break;
        }
        struct iovec *v = pieces + used;
        int count = reply_pieces(message, size, &hit, v + 1);
        size_t length = 0;
        for (int i = 1; i <= count; i++)
            length += v[i].iov_len;
        lengths[answered][0] = (unsigned char)(length >> 8);
        lengths[answered][1] = (unsigned char)length;
        v[0] = (struct iovec){lengths[answered], 2};
        used += count + 1;
        held[answered++] = hit.reply;
        at += 2 + size;
    }

    /* Send what was answered (also after an error: those messages are consumed). */
    size_t total = 0, sent = 0;
    for (int i = 0; i < used; i++)
        total += pieces[i].iov_len;
    if (total && !hold && closed <= 0) { /* a client that closed its side may still read */
        struct msghdr message = {.msg_iov = pieces, .msg_iovlen = (size_t)used};
        ssize_t wrote;
        do
            wrote = sendmsg(fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (wrote < 0 && errno == EINTR);
        if (wrote >= 0)
            sent = (size_t)wrote;
        else if (errno != EAGAIN && errno != EWOULDBLOCK)
            closed = errno;
    }
    PyObject *unsent = NULL;
    int status = 0;
    if (sent < total && closed <= 0 && (unsent = rest_of(pieces, used, sent)) == NULL)
        status = -1; /* a broken connection's replies have nowhere to go */
    for (int i = 0; i < answered; i++)
        Py_DECREF(held[i]);

    /* What is not answered stays for the Python connection, after what was buffered. */
    if (buffered) {
        if (at && PySequence_DelSlice(buf, 0, at) < 0)
            status = -1;
    } else if (append(buf, input + at, n - at) < 0) {
        status = -1;
    }
    if (tally_flush(&tally, stats, view.answers) < 0)
        status = -1;
    view_close(&view);
    if (failed || status < 0) {
        Py_XDECREF(unsent);
        return -1;
    }
    *out = (struct served){answered, unsent, closed};
    return 0;
}

/* TcpSession: the C half of a TCP connection (tcp.TcpConnection subclasses it). The
 * loop calls the session itself when its socket is readable: it answers there and
 * then what the cache replays and, when that was all (every message answered and
 * sent, none begun), moves the idle deadline and the connection's place in the
 * eviction order itself. Anything else goes to the Python connection (_after): a
 * miss, a partial message or short frame, replies the kernel did not take, the
 * end of the stream; an error goes to _failed. */
typedef struct {
    PyObject_HEAD
    int fd;
    int replay;         /* answer in C at all (the tests turn it off: the Python path) */
    int batch;          /* messages per readiness at most (tcp.TCP_BATCH) */
    long served;        /* messages answered so far */
    double deadline;    /* close at this time of the loop's clock (CLOCK_MONOTONIC)... */
    double timer_at;    /* ...checked by the timer, which wakes at this time */
    double idle_timeout;
    PyObject *reason;   /* ...for this reason ("idle", "slow", "not_reading") */
    PyObject *buf;      /* bytearray: bytes received, not answered yet */
    PyObject *pending;  /* bytearray: replies the kernel did not take yet */
    PyObject *state;    /* callable: the serving state (its .cache) */
    PyObject *stats;    /* handler.Stats */
    PyObject *order;    /* OrderedDict: connections, least recently useful first */
} Session;

static PyObject *s_serve, *s_failed, *s_cache, *s_idle, *s_move;

static int
session_traverse(PyObject *op, visitproc visit, void *arg)
{
    Session *self = (Session *)op;
    Py_VISIT(self->reason);
    Py_VISIT(self->buf);
    Py_VISIT(self->pending);
    Py_VISIT(self->state);
    Py_VISIT(self->stats);
    Py_VISIT(self->order);
    return 0;
}

static int
session_clear(PyObject *op)
{
    Session *self = (Session *)op;
    Py_CLEAR(self->reason);
    Py_CLEAR(self->buf);
    Py_CLEAR(self->pending);
    Py_CLEAR(self->state);
    Py_CLEAR(self->stats);
    Py_CLEAR(self->order);
    return 0;
}

static void
session_dealloc(PyObject *op)
{
    PyObject_GC_UnTrack(op);
    session_clear(op);
    Py_TYPE(op)->tp_free(op);
}

/* The loop's reader callback. */
static PyObject *
session_call(PyObject *op, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwargs))
{
    Session *self = (Session *)op;
    if (!self->replay || self->state == NULL || self->stats == NULL || self->order == NULL
        || self->buf == NULL || self->pending == NULL || !PyByteArray_CheckExact(self->pending)
        || PyByteArray_GET_SIZE(self->pending) > 0) {
        PyObject *read = PyLong_FromLong(1);
        PyObject *result = read == NULL ? NULL : PyObject_CallMethodOneArg(op, s_serve, read);
        Py_XDECREF(read);
        return result;
    }
    int continuing = PyByteArray_CheckExact(self->buf) && PyByteArray_GET_SIZE(self->buf) > 0;
    PyObject *state = PyObject_CallNoArgs(self->state);
    PyObject *cache = state == NULL ? NULL : PyObject_GetAttr(state, s_cache);
    Py_XDECREF(state);
    struct served r;
    if (cache == NULL || serve(self->fd, self->buf, cache, self->stats, self->batch, 1, 0, &r) < 0) {
        Py_XDECREF(cache);
        return pass_error(op, s_failed);
    }
    Py_DECREF(cache);
    if (r.answered && r.unsent == NULL && r.closed == 0 && PyByteArray_GET_SIZE(self->buf) == 0) {
        double when = monotonic() + self->idle_timeout;
        if (when >= self->timer_at) { /* else the timer must wake earlier: Python arms it */
            self->served += r.answered;
            self->deadline = when;
            Py_XSETREF(self->reason, Py_NewRef(s_idle));
            PyObject *call[2] = {self->order, op}; /* useful lately: the last to be evicted */
            PyObject *moved = PyObject_VectorcallMethod(s_move, call, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            if (moved == NULL)
                return pass_error(op, s_failed);
            Py_DECREF(moved);
            Py_RETURN_NONE;
        }
    }
    return PyObject_CallMethod(op, "_after", "iNii", r.answered, r.unsent != NULL ? r.unsent : Py_NewRef(Py_None),
                               r.closed, continuing);
}

/* serve(cache, stats, limit, read, hold) -> (answered, unsent, closed): the replay for the Python path. */
static PyObject *
session_serve(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    Session *self = (Session *)op;
    int flags[3];
    if (nargs != 5 || int_args(args + 2, 3, 3, flags) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "serve(cache, stats, limit, read, hold)");
        return NULL;
    }
    if (self->buf == NULL) {
        PyErr_SetString(PyExc_TypeError, "serve() before the session's buffer is set");
        return NULL;
    }
    struct served r;
    if (serve(self->fd, self->buf, args[0], args[1], flags[0], flags[1], flags[2], &r) < 0)
        return NULL;
    return Py_BuildValue("(iNi)", r.answered, r.unsent != NULL ? r.unsent : Py_NewRef(Py_None), r.closed);
}

static PyMethodDef session_methods[] = {
    {"serve", (PyCFunction)(void (*)(void))session_serve, METH_FASTCALL,
     "serve(cache, stats, limit, read, hold): read (if read), answer what the cache replays (at most limit), "
     "send it (unless hold: replies wait already); (answered, unsent, closed)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef session_members[] = {
    {"fd", T_INT, offsetof(Session, fd), 0, "the client's socket"},
    {"replay", T_INT, offsetof(Session, replay), 0, "answer in C when readable"},
    {"batch", T_INT, offsetof(Session, batch), 0, "messages per readiness at most"},
    {"served", T_LONG, offsetof(Session, served), 0, "messages answered so far"},
    {"deadline", T_DOUBLE, offsetof(Session, deadline), 0, "close at this time of the monotonic clock"},
    {"timer_at", T_DOUBLE, offsetof(Session, timer_at), 0, "when the timer wakes"},
    {"idle_timeout", T_DOUBLE, offsetof(Session, idle_timeout), 0, "seconds of silence allowed"},
    {"reason", T_OBJECT, offsetof(Session, reason), 0, "why it closes at the deadline"},
    {"buf", T_OBJECT_EX, offsetof(Session, buf), 0, "bytes received, not answered yet"},
    {"pending", T_OBJECT_EX, offsetof(Session, pending), 0, "replies the kernel did not take yet"},
    {"state", T_OBJECT_EX, offsetof(Session, state), 0, "the serving state getter"},
    {"stats", T_OBJECT_EX, offsetof(Session, stats), 0, "the counters"},
    {"order", T_OBJECT_EX, offsetof(Session, order), 0, "the eviction order"},
    {NULL, 0, 0, 0, NULL},
};

HIDDEN PyTypeObject session_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "geodns.dns._netio.TcpSession",
    .tp_doc = "The C half of a DNS-over-TCP connection: the loop calls it when the socket is readable.",
    .tp_basicsize = sizeof(Session),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = session_dealloc,
    .tp_traverse = session_traverse,
    .tp_clear = session_clear,
    .tp_call = session_call,
    .tp_methods = session_methods,
    .tp_members = session_members,
};

HIDDEN int
tcpserve_ready(void)
{
    static const char *names[] = {"_serve", "_failed", "cache", "idle", "move_to_end"};
    PyObject **interned[] = {&s_serve, &s_failed, &s_cache, &s_idle, &s_move};
    if (intern_all(names, interned, sizeof names / sizeof *names) < 0)
        return -1;
    return PyType_Ready(&session_type);
}
