/* What the two halves of the _netio extension share: the batch just received
 * (_netio.c, the I/O) and the cache's replay over it (_replay.c). */
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

#define SLOTS 64           /* datagrams per call: the Python loop's batch */
#define SLOT_SIZE 65536    /* a whole datagram: a longer one cannot exist over UDP */
#define QTYPE_CAP 258      /* as Stats.answers counts them: at most 16 x 259 keys */
#define HIDDEN __attribute__((visibility("hidden"))) /* shared by the two files, no one else */

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
/* `want` ints from a vectorcall's arguments. */
HIDDEN int int_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, int *out);

HIDDEN PyObject *udpio_serve(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
HIDDEN PyObject *udpio_configure(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
