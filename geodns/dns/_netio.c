/* Batched UDP I/O for the DNS answer loop: recvmmsg/sendmmsg (Linux).
 *
 * Why C: on a cache hit the answer itself costs under a microsecond of Python,
 * but socket.recvfrom/sendto cost several more per datagram: a 64 KiB buffer
 * allocated and shrunk per read, argument parsing and address conversion per
 * call, and a BlockingIOError (strerror, message formatting) to learn that the
 * socket is empty. Here one recvmmsg call returns every queued datagram and
 * tells that the queue is drained by returning fewer than asked; one sendmmsg
 * sends every reply. Only I/O lives here: what to answer stays in Python.
 *
 * recv(fd, limit) -> [(data: bytes, address: tuple), ...]   ([] when none)
 * send(fd, family, [(reply: bytes, address: tuple), ...]) -> (dropped, errno)
 * serve(fd, cache, stats, admit, now), configure(...): the cache's replay, _replay.c
 * TcpSession: a TCP connection's C half, the cache's replay over its messages, _tcpserve.c
 * UdpReader: a UDP socket's reader, serve() without a Python frame, _udpreader.c
 *
 * Addresses are the tuples the socket module uses: (host, port) for IPv4,
 * (host, port, flowinfo, scope_id) for IPv6.
 */
#include "_netio.h"

/* Receive buffers, allocated on first use (the kernel touches only what it writes). */
static unsigned char *buffers;
HIDDEN struct mmsghdr messages[SLOTS];
HIDDEN struct iovec vectors[SLOTS];
HIDDEN struct sockaddr_storage sources[SLOTS];
/* The address tuples the last recv handed out, with their sockaddrs: a reply sent
 * to one of those very objects (the answer loop's case) skips parsing it back. */
static PyObject *handed[SLOTS];
static struct sockaddr_storage handed_sources[SLOTS];
static socklen_t handed_lengths[SLOTS];
static int handed_count;
/* IPv4 host strings by address, direct-mapped: a resolver's address is formatted
 * once, and the rate limiter's dict finds the same object (its hash kept). */
#define HOSTS 256
static PyObject *hosts[HOSTS];
static in_addr_t host_addresses[HOSTS];

/* Dotted quad without stdio (inet_ntop formats through vfprintf). */
static PyObject *
ipv4_text(const struct in_addr *address)
{
    const unsigned char *b = (const unsigned char *)&address->s_addr;
    char text[16];
    int n = 0;
    for (int i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (v >= 100)
            text[n++] = (char)('0' + v / 100);
        if (v >= 10)
            text[n++] = (char)('0' + v / 10 % 10);
        text[n++] = (char)('0' + v % 10);
        text[n++] = '.';
    }
    return PyUnicode_DecodeASCII(text, n - 1, NULL);
}

/* The host part of an address as the socket module writes it (a new reference). */
HIDDEN PyObject *
host_text(const struct sockaddr_storage *source, socklen_t length)
{
    if (source->ss_family == AF_INET && length >= sizeof(struct sockaddr_in)) {
        in_addr_t a = ((const struct sockaddr_in *)source)->sin_addr.s_addr;
        unsigned slot = (a ^ a >> 8 ^ a >> 16 ^ a >> 24) & (HOSTS - 1);
        if (hosts[slot] == NULL || host_addresses[slot] != a) {
            PyObject *text = ipv4_text(&((const struct sockaddr_in *)source)->sin_addr);
            if (text == NULL)
                return NULL;
            Py_XSETREF(hosts[slot], text);
            host_addresses[slot] = a;
        }
        return Py_NewRef(hosts[slot]);
    }
    if (source->ss_family == AF_INET6 && length >= sizeof(struct sockaddr_in6)) {
        char text[INET6_ADDRSTRLEN];
        if (inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)source)->sin6_addr, text, sizeof text) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return PyUnicode_DecodeASCII(text, (Py_ssize_t)strlen(text), NULL);
    }
    Py_RETURN_NONE;
}

static PyObject *
address_tuple(const struct sockaddr_storage *source, socklen_t length)
{
    PyObject *host, *port, *pair;
    if (source->ss_family == AF_INET && length >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)source;
        host = host_text(source, length);
        port = host == NULL ? NULL : PyLong_FromLong(ntohs(v4->sin_port));
        pair = port == NULL ? NULL : PyTuple_Pack(2, host, port);
        Py_XDECREF(host);
        Py_XDECREF(port);
        return pair;
    }
    if (source->ss_family == AF_INET6 && length >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)source;
        char text[INET6_ADDRSTRLEN];
        if (inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(siII)", text, ntohs(v6->sin6_port), ntohl(v6->sin6_flowinfo),
                             v6->sin6_scope_id);
    }
    /* Not an IP datagram socket: nothing the answer loop can reply to. */
    Py_RETURN_NONE;
}

HIDDEN PyObject *
pass_error(PyObject *op, PyObject *method)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (value != NULL && traceback != NULL)
        PyException_SetTraceback(value, traceback);
    PyObject *result = PyObject_CallMethodOneArg(op, method, value != NULL ? value : Py_None);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    return result;
}

HIDDEN double
monotonic(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* Each names[i] interned into *interned[i], once: the attribute and method names the C halves use. */
HIDDEN int
intern_all(const char *const *names, PyObject **const *interned, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (*interned[i] == NULL && (*interned[i] = PyUnicode_InternFromString(names[i])) == NULL)
            return -1;
    return 0;
}

/* `want` ints from a vectorcall's arguments (cheaper than PyArg_ParseTuple per batch). */
HIDDEN int
int_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, int *out)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "expected %zd arguments, got %zd", want, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < want; i++) {
        long value = PyLong_AsLong(args[i]);
        if (value == -1 && PyErr_Occurred())
            return -1;
        if (value < INT_MIN || value > INT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "argument out of range");
            return -1;
        }
        out[i] = (int)value;
    }
    return 0;
}

/* Receive up to `limit` datagrams: how many came (0 when none wait), -1 with a
 * Python error set. Releases the addresses the last batch handed out. */
HIDDEN int
receive(int fd, int limit)
{
    if (limit < 1 || limit > SLOTS)
        limit = SLOTS;
    if (buffers == NULL) {
        buffers = PyMem_RawMalloc((size_t)SLOTS * SLOT_SIZE);
        if (buffers == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (int i = 0; i < SLOTS; i++) {
            vectors[i].iov_base = buffers + (size_t)i * SLOT_SIZE;
            vectors[i].iov_len = SLOT_SIZE;
            messages[i].msg_hdr.msg_iov = &vectors[i];
            messages[i].msg_hdr.msg_iovlen = 1;
            messages[i].msg_hdr.msg_name = &sources[i];
        }
    }
    for (int i = 0; i < limit; i++) { /* what the kernel wrote last time */
        messages[i].msg_hdr.msg_namelen = sizeof sources[i];
        messages[i].msg_hdr.msg_controllen = 0;
        messages[i].msg_hdr.msg_flags = 0;
    }
    for (int i = 0; i < handed_count; i++)
        Py_CLEAR(handed[i]);
    handed_count = 0;
    int got = recvmmsg(fd, messages, (unsigned int)limit, MSG_DONTWAIT, NULL);
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return got;
}

/* Append datagram i to `batch` as (data, address), the address remembered for
 * send(); 0 also for a datagram skipped (not from an IP address), -1 on error. */
HIDDEN int
hand_out(int i, PyObject *batch)
{
    socklen_t length = messages[i].msg_hdr.msg_namelen;
    PyObject *address = address_tuple(&sources[i], length);
    if (address == NULL)
        return -1;
    if (address == Py_None) { /* not an IP datagram socket: nothing to reply to */
        Py_DECREF(address);
        return 0;
    }
    PyObject *data = PyBytes_FromStringAndSize((const char *)vectors[i].iov_base, messages[i].msg_len);
    PyObject *pair = data == NULL ? NULL : PyTuple_Pack(2, data, address);
    Py_XDECREF(data);
    handed_sources[handed_count] = sources[i];
    handed_lengths[handed_count] = length;
    handed[handed_count++] = address; /* the reference is handed[]'s now */
    if (pair == NULL || PyList_Append(batch, pair) < 0) {
        Py_XDECREF(pair);
        return -1;
    }
    Py_DECREF(pair);
    return 0;
}

static PyObject *
udpio_recv(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    int values[2];
    if (int_args(args, nargs, 2, values) < 0)
        return NULL;
    int got = receive(values[0], values[1]);
    if (got < 0)
        return NULL;
    PyObject *batch = PyList_New(0);
    if (batch == NULL)
        return NULL;
    for (int i = 0; i < got; i++) {
        if (hand_out(i, batch) < 0) {
            Py_DECREF(batch);
            return NULL;
        }
    }
    return batch;
}

/* sendmmsg every message, skipping one the kernel refuses (a full buffer, an
 * unreachable client); counts those in *dropped, the last errno in *error. */
HIDDEN void
send_all(int fd, struct mmsghdr *out, int n, int *dropped, int *error)
{
    int done = 0;
    while (done < n) {
        int sent = sendmmsg(fd, out + done, (unsigned int)(n - done), MSG_DONTWAIT);
        if (sent > 0) {
            done += sent;
            continue;
        }
        if (sent < 0 && errno == EINTR)
            continue;
        *error = sent < 0 ? errno : EIO;
        (*dropped)++;
        done++;
    }
}

/* Fill `target` from an address tuple; 0 on success, -1 with a Python error set. */
static int
parse_address(int family, PyObject *address, struct sockaddr_storage *target, socklen_t *length)
{
    const char *host;
    int port;
    unsigned int flowinfo = 0, scope_id = 0;
    if (!PyTuple_Check(address)) {
        PyErr_SetString(PyExc_TypeError, "address must be a tuple");
        return -1;
    }
    memset(target, 0, sizeof *target);
    if (family == AF_INET) {
        struct sockaddr_in *v4 = (struct sockaddr_in *)target;
        if (!PyArg_ParseTuple(address, "si", &host, &port))
            return -1;
        if (inet_pton(AF_INET, host, &v4->sin_addr) != 1)
            goto bad_host;
        v4->sin_family = AF_INET;
        v4->sin_port = htons((unsigned short)port);
        *length = sizeof *v4;
        return 0;
    }
    if (family == AF_INET6) {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)target;
        if (!PyArg_ParseTuple(address, "si|II", &host, &port, &flowinfo, &scope_id))
            return -1;
        if (inet_pton(AF_INET6, host, &v6->sin6_addr) != 1)
            goto bad_host;
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((unsigned short)port);
        v6->sin6_flowinfo = htonl(flowinfo);
        v6->sin6_scope_id = scope_id;
        *length = sizeof *v6;
        return 0;
    }
    PyErr_Format(PyExc_ValueError, "unsupported address family %d", family);
    return -1;
bad_host:
    PyErr_Format(PyExc_ValueError, "not an address: %s", host);
    return -1;
}

static PyObject *
udpio_send(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    int values[2];
    if (int_args(args, nargs < 3 ? nargs : 2, 2, values) < 0)
        return NULL;
    int fd = values[0], family = values[1];
    PyObject *replies = nargs == 3 ? args[2] : NULL;
    if (nargs != 3 || !PyList_Check(replies)) {
        PyErr_SetString(PyExc_TypeError, "send(fd, family, replies): replies must be a list");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(replies);
    int dropped = 0, last_error = 0, cursor = 0;
    struct mmsghdr out[SLOTS];
    struct iovec out_vectors[SLOTS];
    struct sockaddr_storage targets[SLOTS];
    for (Py_ssize_t start = 0; start < count; start += SLOTS) {
        Py_ssize_t n = count - start < SLOTS ? count - start : SLOTS;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *pair = PyList_GET_ITEM(replies, start + i);
            if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(pair, 0))) {
                PyErr_SetString(PyExc_TypeError, "replies must be (bytes, address) pairs");
                return NULL;
            }
            PyObject *reply = PyTuple_GET_ITEM(pair, 0);
            PyObject *address = PyTuple_GET_ITEM(pair, 1);
            socklen_t length;
            while (cursor < handed_count && handed[cursor] != address)
                cursor++;
            if (cursor < handed_count) {
                targets[i] = handed_sources[cursor];
                length = handed_lengths[cursor];
            } else {
                cursor = 0; /* not from the last batch, or out of order: parse it */
                if (parse_address(family, address, &targets[i], &length) < 0)
                    return NULL;
            }
            out_vectors[i].iov_base = PyBytes_AS_STRING(reply);
            out_vectors[i].iov_len = (size_t)PyBytes_GET_SIZE(reply);
            memset(&out[i].msg_hdr, 0, sizeof out[i].msg_hdr);
            out[i].msg_hdr.msg_iov = &out_vectors[i];
            out[i].msg_hdr.msg_iovlen = 1;
            out[i].msg_hdr.msg_name = &targets[i];
            out[i].msg_hdr.msg_namelen = length;
        }
        /* The replies stay alive (the list holds them) while the kernel copies them. */
        send_all(fd, out, (int)n, &dropped, &last_error);
    }
    return Py_BuildValue("(ii)", dropped, last_error);
}

static PyMethodDef methods[] = {
    {"recv", (PyCFunction)(void (*)(void))udpio_recv, METH_FASTCALL, "recv(fd, limit): the queued datagrams, up to limit, as (data, address)."},
    {"send", (PyCFunction)(void (*)(void))udpio_send, METH_FASTCALL, "send(fd, family, replies): send (data, address) pairs; (dropped, errno)."},
    {"serve", (PyCFunction)(void (*)(void))udpio_serve, METH_FASTCALL,
     "serve(fd, cache, stats, admit, now): answer cached queries; (rest, refused, dropped, errno)."},
    {"configure", (PyCFunction)(void (*)(void))udpio_configure, METH_FASTCALL,
     "configure(Rotating, PerSubnet, variants): the cache entry classes serve() replays."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "geodns.dns._netio",
    "Batched UDP I/O (recvmmsg/sendmmsg) and the answer cache's replay over UDP and TCP.", -1, methods,
};

PyMODINIT_FUNC
PyInit__netio(void)
{
    if (tcpserve_ready() < 0 || udpreader_ready() < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module != NULL
        && (PyModule_AddIntConstant(module, "SLOTS", SLOTS) < 0
            || PyModule_AddObjectRef(module, "TcpSession", (PyObject *)&session_type) < 0
            || PyModule_AddObjectRef(module, "UdpReader", (PyObject *)&udpreader_type) < 0)) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
