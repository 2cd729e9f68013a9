/* What the parts of the _netio extension share: the UDP batch just received
 * (_netio.c, the I/O), the cache's replay (_replay.c) over it and over a TCP
 * connection's messages (_tcpserve.c). */
#ifndef GEODNS_NETIO_H
#define GEODNS_NETIO_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define SLOTS 64           /* datagrams per call: the Python loop's batch */
#define SLOT_SIZE 65536    /* a whole datagram: a longer one cannot exist over UDP */
#define QTYPE_CAP 258      /* as Stats.answers counts them: at most 16 x 259 keys */
#define HIDDEN __attribute__((visibility("hidden"))) /* shared by the extension's files, no one else */

/* The last batch received: datagram i is vectors[i] (messages[i].msg_len bytes) from sources[i]. */
extern HIDDEN struct mmsghdr messages[SLOTS];
extern HIDDEN struct iovec vectors[SLOTS];
extern HIDDEN struct sockaddr_storage sources[SLOTS];

/* Receive up to `limit` datagrams: how many came (0 when none wait), -1 with a Python error set. */
HIDDEN int receive(int fd, int limit);
/* Append datagram i to `batch` as (data, address), the address kept for send(); -1 on error. */
HIDDEN int hand_out(int i, PyObject *batch);
/* sendmmsg every message, skipping one the kernel refuses; counts those and the last errno. */
HIDDEN void send_all(int fd, struct mmsghdr *out, int n, int *dropped, int *error);
/* The host part of an address as the socket module writes it (a new reference; None: not IP). */
HIDDEN PyObject *host_text(const struct sockaddr_storage *source, socklen_t length);
/* The exception being raised, taken and passed to op.method(exc) (its traceback kept): the
 * Python half of a C reader says what went wrong; the loop never sees it. */
HIDDEN PyObject *pass_error(PyObject *op, PyObject *method);
/* CLOCK_MONOTONIC in seconds: time.monotonic(), read from C. */
HIDDEN double monotonic(void);
/* Each names[i] interned into *interned[i] once; -1 with a Python error set. */
HIDDEN int intern_all(const char *const *names, PyObject **const *interned, size_t count);
/* `want` ints from a vectorcall's arguments. */
HIDDEN int int_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, int *out);

/* One cached reply as it goes out: the client's ID, then the reply after its ID,
 * with the client's own spelling of the name (0x20: up to name_end) or its own
 * ECS address (the query's last `ecs` bytes) spliced in. */
struct hit {
    PyObject *reply;   /* a new reference; NULL: nothing cached to replay */
    PyObject *steered; /* ECS: the decision key, counted in stats.geo (a new reference) */
    Py_ssize_t name_end;
    Py_ssize_t ecs;
};
#define PIECES 4 /* iovecs of one reply (reply_pieces) */

/* The answer cache's table for one transport and the stats' dicts (new references). */
struct view {
    PyObject *table, *subnet_keys, *answers, *geo;
};

/* Replies as the Python path counts them at the send: by (rcode << 16 | qtype), queries, cache hits. */
struct counted {
    long key;
    long count;
};
struct tally {
    struct counted counts[SLOTS];
    int kinds;
    int hits;
};

/* `view` of cache.udp (udp) or cache.tcp, with stats' dicts; -1 with a Python error set. */
HIDDEN int view_open(struct view *view, PyObject *cache, int udp, PyObject *stats);
HIDDEN void view_close(struct view *view);
/* What the cache holds for the message d[0:n], as the Python path would replay it;
 * hit->reply stays NULL when it holds nothing the C replay can send. -1 on error. */
HIDDEN int replay_lookup(const char *d, Py_ssize_t n, PyObject *table, PyObject *subnet_keys, struct hit *hit);
/* The reply to d[0:n] from `hit` as iovecs (at most PIECES, pointing into d and the kept reply). */
HIDDEN int reply_pieces(const char *d, Py_ssize_t n, const struct hit *hit, struct iovec *v);
/* Count one replayed reply (and its geo decision); tally_flush adds the counts to stats. */
HIDDEN int tally_add(struct tally *tally, const char *d, Py_ssize_t n, const struct hit *hit, PyObject *geo);
HIDDEN int tally_flush(const struct tally *tally, PyObject *stats, PyObject *answers);

/* What one UDP batch's replay left: datagrams for the Python path (`rest`), those the
 * rate limiter refused (new lists), replies the kernel refused and the last errno. */
struct batch {
    PyObject *rest, *refused;
    int dropped, error;
};
/* Receive a batch on `fd` and send what `cache` replays (admit: the limiter's, or None);
 * -1 with a Python error set (what was answered before is sent all the same). */
HIDDEN int serve_batch(int fd, PyObject *cache, PyObject *stats, PyObject *admit, PyObject *now,
                       struct batch *out);
/* The UdpReader type (_udpreader.c), ready to add to the module. */
HIDDEN int udpreader_ready(void);
extern HIDDEN PyTypeObject udpreader_type;

HIDDEN PyObject *udpio_serve(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
HIDDEN PyObject *udpio_configure(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
/* The TcpSession type (_tcpserve.c), ready to add to the module: 0, or -1 with an error set. */
HIDDEN int tcpserve_ready(void);
extern HIDDEN PyTypeObject session_type;

#endif
