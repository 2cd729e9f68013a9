/* The answer cache's replay over a received UDP batch (part of the _netio extension).
 *
 * serve(fd, cache, stats, admit, now) -> (rest, refused, dropped, errno)
 * configure(Rotating, PerSubnet, variants)
 *
 * serve() is _netio.recv() that answers what the answer cache (fastcache.AnswerCache)
 * can replay as it stands: a reply kept under the query's exact bytes, the next
 * variant of a random answer whose variants are all drawn, a geo answer kept per
 * decision for an ECS subnet already placed, or (0x20) a reply kept under the
 * bytes with the name in lower case. The client's ID, spelling and subnet are
 * spliced in without copying; all go in one sendmmsg, counted in `stats` as the
 * Python path counts them. Everything else is handed back (`rest`) for the
 * Python answer path, which alone decides answers and fills the cache: this
 * only replays. The rate limiter stays one Python implementation: `admit(host,
 * now)` counts each reply and says whether it may go as it is; one it refuses
 * comes back in `refused` for the limiter to charge. Why: the Python loop
 * spent 1-2 us per cache hit on objects (a reply built, a tuple, dict counters),
 * as much as the whole gap to the C servers.
 */
#include "_netio.h"

/* The answer cache's entry classes the replay understands besides bytes
 * (fastcache.Rotating and PerSubnet), told once by configure(); any other entry
 * is the Python path's. */
static PyTypeObject *rotating_type, *per_subnet_type;
static Py_ssize_t variants = PY_SSIZE_T_MAX;
static PyObject *s_move_to_end, *s_replies, *s_index, *s_by_key, *s_udp, *s_tcp, *s_subnet_keys, *s_answers,
    *s_geo, *s_queries, *s_cache_hits;

/* Least recently used goes first: the entry under `key` is now the most recent. */
static int
touch(PyObject *table, PyObject *key)
{
    PyObject *call[3] = {NULL, table, key};
    PyObject *moved = PyObject_VectorcallMethod(s_move_to_end, call + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (moved == NULL)
        return -1;
    Py_DECREF(moved);
    return 0;
}

/* A random answer's next variant, served in turn (Rotating.next), once all its
 * variants are drawn; before that the Python path draws one more per query.
 * 0 with hit->reply set or not, -1 on error. */
static int
rotate(PyObject *entry, struct hit *hit)
{
    PyObject *replies = PyObject_GetAttr(entry, s_replies);
    if (replies == NULL)
        return -1;
    int status = 0;
    Py_ssize_t count = PyList_CheckExact(replies) ? PyList_GET_SIZE(replies) : 0;
    if (count >= variants && count > 0) {
        PyObject *index = PyObject_GetAttr(entry, s_index);
        long i = index == NULL ? -1 : PyLong_AsLong(index);
        Py_XDECREF(index);
        PyObject *next = i == -1 && PyErr_Occurred() ? NULL : PyLong_FromLong((i + 1) % count);
        if (next == NULL || PyObject_SetAttr(entry, s_index, next) < 0) {
            status = -1;
        } else {
            PyObject *reply = PyList_GET_ITEM(replies, (i + 1) % count);
            if (PyBytes_CheckExact(reply))
                hit->reply = Py_NewRef(reply);
        }
        Py_XDECREF(next);
    }
    Py_DECREF(replies);
    return status;
}

/* A geo answer kept per decision (fastpath._per_subnet): found under the query's
 * bytes without its ECS address, for an IPv4 /24 or IPv6 /56 (3 or 7 bytes), its
 * decision key already known for this subnet. 1 found, 0 not, -1 on error. */
static int
per_subnet(const char *d, Py_ssize_t n, PyObject *table, PyObject *subnet_keys, struct hit *hit)
{
    static const Py_ssize_t sizes[2] = {3, 7};
    if (d[11] != 1) /* one additional record (the OPT), as every ECS query has */
        return 0;
    for (int s = 0; s < 2; s++) {
        Py_ssize_t size = sizes[s];
        PyObject *key = PyBytes_FromStringAndSize(d + 2, n - 2 - size);
        if (key == NULL)
            return -1;
        PyObject *entry = PyDict_GetItemWithError(table, key);
        Py_DECREF(key);
        if (entry == NULL) {
            if (PyErr_Occurred())
                return -1;
            continue;
        }
        if (Py_TYPE(entry) != per_subnet_type)
            continue;
        /* Stray bits past the prefix: the full path refuses them (FORMERR). */
        unsigned prefix = (unsigned char)d[n - size - 2] % 8;
        if ((unsigned char)d[n - 1] & (0xFF >> (prefix ? prefix : 8)))
            return 0;
        PyObject *raw = PyBytes_FromStringAndSize(d + n - size - 4, size + 4);
        if (raw == NULL)
            return -1;
        PyObject *steered = PyDict_GetItemWithError(subnet_keys, raw);
        Py_DECREF(raw);
        if (steered == NULL) /* a subnet not yet placed: the Python path places it */
            return PyErr_Occurred() ? -1 : 0;
        PyObject *by_key = PyObject_GetAttr(entry, s_by_key);
        if (by_key == NULL)
            return -1;
        PyObject *kept = PyDict_Check(by_key) ? PyDict_GetItemWithError(by_key, steered) : NULL;
        int status = kept == NULL && PyErr_Occurred() ? -1 : 0;
        if (kept != NULL && PyBytes_CheckExact(kept) && PyBytes_GET_SIZE(kept) >= size) {
            hit->reply = Py_NewRef(kept);
            hit->steered = Py_NewRef(steered);
            hit->ecs = size;
            status = 1;
        }
        Py_DECREF(by_key);
        return status;
    }
    return 0;
}

/* 0x20: a name in mixed case, cached under its bytes with the name in lower case. */
static int
cased(const char *d, Py_ssize_t n, PyObject *table, struct hit *hit)
{
    const char *end = memchr(d + 12, 0, (size_t)(n - 12));
    int upper = 0;
    for (const char *c = d + 12; end != NULL && c < end; c++)
        upper |= *c >= 'A' && *c <= 'Z';
    if (!upper)
        return 0;
    PyObject *lowered = PyBytes_FromStringAndSize(d + 2, n - 2);
    if (lowered == NULL)
        return -1;
    char *l = PyBytes_AS_STRING(lowered);
    for (Py_ssize_t j = 10; j < end - d - 2; j++)
        if (l[j] >= 'A' && l[j] <= 'Z')
            l[j] = (char)(l[j] + 32);
    PyObject *entry = PyDict_GetItemWithError(table, lowered);
    int status = entry == NULL && PyErr_Occurred() ? -1 : 0;
    if (entry != NULL && PyBytes_CheckExact(entry)) {
        status = touch(table, lowered);
        if (status == 0) {
            hit->reply = Py_NewRef(entry);
            hit->name_end = end - d;
        }
    }
    Py_DECREF(lowered);
    return status;
}

HIDDEN int
replay_lookup(const char *d, Py_ssize_t n, PyObject *table, PyObject *subnet_keys, struct hit *hit)
{
    *hit = (struct hit){NULL, NULL, 0, 0};
    if (n < 17) /* a header and the shortest question: the full path answers the rest */
        return 0;
    PyObject *key = PyBytes_FromStringAndSize(d + 2, n - 2);
    if (key == NULL)
        return -1;
    PyObject *entry = PyDict_GetItemWithError(table, key);
    if (entry == NULL) {
        Py_DECREF(key);
        if (PyErr_Occurred())
            return -1;
        int found = per_subnet(d, n, table, subnet_keys, hit);
        return found != 0 ? (found < 0 ? -1 : 0) : cased(d, n, table, hit);
    }
    int status = 0;
    if (PyBytes_CheckExact(entry))
        hit->reply = Py_NewRef(entry);
    else if (Py_TYPE(entry) == rotating_type)
        status = rotate(entry, hit);
    if (status == 0 && hit->reply != NULL)
        status = touch(table, key);
    Py_DECREF(key);
    if (status < 0) {
        Py_CLEAR(hit->reply);
        Py_CLEAR(hit->steered);
    }
    return status;
}

/* counts[key] += by, for a dict of ints. */
static int
add_count(PyObject *counts, PyObject *key, long by)
{
    PyObject *old = PyDict_GetItemWithError(counts, key);
    long total = by;
    if (old != NULL)
        total += PyLong_AsLong(old);
    PyObject *value = PyErr_Occurred() ? NULL : PyLong_FromLong(total);
    int status = value == NULL ? -1 : PyDict_SetItem(counts, key, value);
    Py_XDECREF(value);
    return status;
}


/* obj.name += by */
static int
add_attribute(PyObject *obj, PyObject *name, long by)
{
    PyObject *old = PyObject_GetAttr(obj, name);
    long total = old == NULL ? -1 : PyLong_AsLong(old) + by;
    Py_XDECREF(old);
    PyObject *value = PyErr_Occurred() ? NULL : PyLong_FromLong(total);
    int status = value == NULL ? -1 : PyObject_SetAttr(obj, name, value);
    Py_XDECREF(value);
    return status;
}

HIDDEN int
view_open(struct view *view, PyObject *cache, int udp, PyObject *stats)
{
    *view = (struct view){NULL, NULL, NULL, NULL};
    if (rotating_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "serve() before configure()");
        return -1;
    }
    view->table = PyObject_GetAttr(cache, udp ? s_udp : s_tcp);
    view->subnet_keys = view->table == NULL ? NULL : PyObject_GetAttr(cache, s_subnet_keys);
    view->answers = view->subnet_keys == NULL ? NULL : PyObject_GetAttr(stats, s_answers);
    view->geo = view->answers == NULL ? NULL : PyObject_GetAttr(stats, s_geo);
    if (view->geo == NULL)
        return -1;
    if (!PyDict_Check(view->table) || !PyDict_Check(view->subnet_keys) || !PyDict_Check(view->answers)
        || !PyDict_Check(view->geo)) {
        PyErr_SetString(PyExc_TypeError, "serve(): the cache's tables and the stats' counters must be dicts");
        return -1;
    }
    return 0;
}

HIDDEN void
view_close(struct view *view)
{
    Py_CLEAR(view->table);
    Py_CLEAR(view->subnet_keys);
    Py_CLEAR(view->answers);
    Py_CLEAR(view->geo);
}

HIDDEN int
tally_add(struct tally *tally, const char *d, Py_ssize_t n, const struct hit *hit, PyObject *geo)
{
    if (hit->steered != NULL && add_count(geo, hit->steered, 1) < 0) /* a geo answer, by its decision */
        return -1;
    const char *stored = PyBytes_AS_STRING(hit->reply);
    const char *end = memchr(d + 12, 0, (size_t)(n - 12));
    long qtype = end != NULL && end - d < n - 2 ? ((unsigned char)end[1] << 8 | (unsigned char)end[2]) : 0;
    long counted = (long)((unsigned char)stored[1] & 15) << 16 | (qtype < QTYPE_CAP ? qtype : QTYPE_CAP);
    int k = 0;
    while (k < tally->kinds && tally->counts[k].key != counted)
        k++;
    if (k == tally->kinds)
        tally->counts[tally->kinds++] = (struct counted){counted, 0};
    tally->counts[k].count++;
    tally->hits++;
    return 0;
}

HIDDEN int
tally_flush(const struct tally *tally, PyObject *stats, PyObject *answers)
{
    for (int i = 0; i < tally->kinds; i++) {
        PyObject *key = PyLong_FromLong(tally->counts[i].key);
        int status = key == NULL ? -1 : add_count(answers, key, tally->counts[i].count);
        Py_XDECREF(key);
        if (status < 0)
            return -1;
    }
    if (tally->hits == 0)
        return 0;
    return add_attribute(stats, s_queries, tally->hits) < 0 || add_attribute(stats, s_cache_hits, tally->hits) < 0
               ? -1
               : 0;
}

HIDDEN int
reply_pieces(const char *d, Py_ssize_t n, const struct hit *hit, struct iovec *v)
{
    char *stored = PyBytes_AS_STRING(hit->reply);
    Py_ssize_t size = PyBytes_GET_SIZE(hit->reply);
    v[0] = (struct iovec){(void *)d, 2}; /* the client's ID */
    if (hit->ecs) { /* the client's own subnet, echoed */
        v[1] = (struct iovec){stored, (size_t)(size - hit->ecs)};
        v[2] = (struct iovec){(void *)(d + n - hit->ecs), (size_t)hit->ecs};
        return 3;
    }
    if (hit->name_end && size >= hit->name_end - 2) { /* the client's own spelling */
        v[1] = (struct iovec){stored, 10};
        v[2] = (struct iovec){(void *)(d + 12), (size_t)(hit->name_end - 12)};
        v[3] = (struct iovec){stored + hit->name_end - 2, (size_t)(size - hit->name_end + 2)};
        return 4;
    }
    v[1] = (struct iovec){stored, (size_t)size};
    return 2;
}

HIDDEN PyObject *
udpio_configure(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyType_Check(args[0]) || !PyType_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "configure(Rotating, PerSubnet, variants)");
        return NULL;
    }
    Py_ssize_t count = PyLong_AsSsize_t(args[2]);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    static const char *names[] = {"move_to_end", "replies", "index", "by_key", "udp", "tcp", "subnet_keys",
                                  "answers", "geo", "queries", "cache_hits"};
    PyObject **interned[] = {&s_move_to_end, &s_replies, &s_index, &s_by_key, &s_udp, &s_tcp, &s_subnet_keys,
                             &s_answers, &s_geo, &s_queries, &s_cache_hits};
    if (intern_all(names, interned, sizeof names / sizeof *names) < 0)
        return NULL;
    Py_XSETREF(rotating_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(per_subnet_type, (PyTypeObject *)Py_NewRef(args[1]));
    variants = count;
    Py_RETURN_NONE;
}

HIDDEN int
serve_batch(int fd, PyObject *cache, PyObject *stats, PyObject *admit, PyObject *now, struct batch *out)
{
    *out = (struct batch){NULL, NULL, 0, 0};
    struct view view;
    struct mmsghdr sent[SLOTS];
    struct iovec pieces[SLOTS][PIECES];
    PyObject *held[SLOTS]; /* the cached replies the iovecs point into, alive until sent */
    struct tally tally; /* counts[] filled as kinds grow: an initializer would clear all 1 KiB of it */
    tally.kinds = tally.hits = 0;
    int hits = 0, status = -1;
    if (admit == Py_None)
        admit = NULL;
    if (view_open(&view, cache, 1, stats) < 0)
        goto done;
    int got = receive(fd, SLOTS);
    if (got < 0 || (out->rest = PyList_New(0)) == NULL || (out->refused = PyList_New(0)) == NULL)
        goto done;
    for (int i = 0; i < got; i++) {
        const char *d = (const char *)vectors[i].iov_base;
        Py_ssize_t n = (Py_ssize_t)messages[i].msg_len;
        struct hit hit;
        if (replay_lookup(d, n, view.table, view.subnet_keys, &hit) < 0)
            goto done;
        if (hit.reply == NULL) {
            if (hand_out(i, out->rest) < 0)
                goto done;
            continue;
        }
        socklen_t length = messages[i].msg_hdr.msg_namelen;
        if (admit != NULL) {
            PyObject *host = host_text(&sources[i], length);
            PyObject *verdict = NULL;
            if (host != NULL && host != Py_None) {
                PyObject *call_args[2] = {host, now};
                verdict = PyObject_Vectorcall(admit, call_args, 2, NULL);
            }
            int allowed = verdict == Py_True, skip = host == Py_None;
            Py_XDECREF(host);
            Py_XDECREF(verdict);
            if (!allowed) {
                Py_DECREF(hit.reply);
                Py_XDECREF(hit.steered);
                /* not an IP address: nothing to reply to; over its rate: the limiter
                 * decides (this reply counted once, here) */
                if (PyErr_Occurred() || (!skip && hand_out(i, out->refused) < 0))
                    goto done;
                continue;
            }
        }
        int counted = tally_add(&tally, d, n, &hit, view.geo);
        Py_XDECREF(hit.steered);
        if (counted < 0) {
            Py_DECREF(hit.reply);
            goto done;
        }
        memset(&sent[hits].msg_hdr, 0, sizeof sent[hits].msg_hdr);
        sent[hits].msg_hdr.msg_iov = pieces[hits];
        sent[hits].msg_hdr.msg_iovlen = (size_t)reply_pieces(d, n, &hit, pieces[hits]);
        sent[hits].msg_hdr.msg_name = &sources[i];
        sent[hits].msg_hdr.msg_namelen = length;
        held[hits++] = hit.reply;
    }
    status = 0;
done:
    /* Whatever happened after, what was answered goes (an error is the Python side's). */
    send_all(fd, sent, hits, &out->dropped, &out->error);
    for (int j = 0; j < hits; j++)
        Py_DECREF(held[j]);
    if (status == 0 && tally_flush(&tally, stats, view.answers) < 0)
        status = -1;
    view_close(&view);
    if (status < 0) {
        Py_CLEAR(out->rest);
        Py_CLEAR(out->refused);
    }
    return status;
}

HIDDEN PyObject *
udpio_serve(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    if (nargs != 5 || int_args(args, 1, 1, &fd) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "serve(fd, cache, stats, admit, now)");
        return NULL;
    }
    struct batch batch;
    if (serve_batch(fd, args[1], args[2], args[3], args[4], &batch) < 0)
        return NULL;
    return Py_BuildValue("(NNii)", batch.rest, batch.refused, batch.dropped, batch.error);
}
