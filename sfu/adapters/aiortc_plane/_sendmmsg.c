/* Protect a batch of RTP packets with one libsrtp session and send them on one UDP socket
 * with sendmmsg(2): the native half of sfu/adapters/aiortc_plane/batch.py, which holds the
 * pure-Python equivalent (chosen when this module is not built) and says why.
 *
 * One function:
 *
 *     send_batch(fd, host, port, protect, context, packets) -> (sent, bytes, errors)
 *
 * fd       the UDP socket (the nominated ICE pair's)
 * host     the remote address, IPv4 or IPv6 text; port its port
 * protect  the address of libsrtp 2's srtp_protect, as pylibsrtp's cffi binding has it:
 *          srtp_err_status_t srtp_protect(srtp_t ctx, void *rtp_hdr, int *len)
 * context  the srtp_t of the session (pylibsrtp.Session._srtp[0])
 * packets  a list of bytes: each is protected in order (the session's rollover counter and
 *          index advance exactly as with one call each), then all are sent, 64 to a syscall
 *
 * A packet libsrtp refuses, or longer than MAX_PACKET (pylibsrtp's limit), is counted in errors and
 * not sent; when the socket's buffer is full (EAGAIN, ENOBUFS) or the send fails, what is
 * left of the batch is counted in errors too: media is not queued behind a full socket.
 * The GIL is held throughout (the socket is non-blocking): the buffers below are static.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define BATCH 64
/* the longest packet taken: pylibsrtp's (its 1500-byte buffer less libsrtp's
 * SRTP_MAX_TRAILER_LEN, 16 + 128), so that both paths refuse the same packets */
#define TRAILER 144
#define MAX_PACKET (1500 - TRAILER)

typedef int (*srtp_protect_fn)(void *ctx, void *rtp_hdr, int *len);

static unsigned char buffers[BATCH][MAX_PACKET + TRAILER];
static struct iovec iovecs[BATCH];
static struct mmsghdr messages[BATCH];

static int
address(const char *host, int port, struct sockaddr_storage *out, socklen_t *length)
{
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((unsigned short)port);
        *length = sizeof(*v4);
        return 0;
    }
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((unsigned short)port);
        *length = sizeof(*v6);
        return 0;
    }
    return -1;
}

/* sendmmsg the first count messages; returns how many went (the rest are dropped) */
static int
send_all(int fd, int count)
{
    int done = 0;
    while (done < count) {
        int n = sendmmsg(fd, messages + done, (unsigned int)(count - done), 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (n == 0) {
            break;
        }
        done += n;
    }
    return done;
}

static PyObject *
send_batch(PyObject *self, PyObject *args)
{
    int fd, port;
    const char *host;
    unsigned long long protect_address, context;
    PyObject *packets;
    if (!PyArg_ParseTuple(args, "isiKKO!", &fd, &host, &port, &protect_address, &context,
                          &PyList_Type, &packets)) {
        return NULL;
    }
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "port out of range");
        return NULL;
    }
    if (protect_address == 0 || context == 0) {
        PyErr_SetString(PyExc_ValueError, "no SRTP session");
        return NULL;
    }
    struct sockaddr_storage remote;
    socklen_t remote_length;
    if (address(host, port, &remote, &remote_length) < 0) {
        PyErr_Format(PyExc_ValueError, "not an IP address: %s", host);
        return NULL;
    }
    srtp_protect_fn protect = (srtp_protect_fn)(uintptr_t)protect_address;
    void *ctx = (void *)(uintptr_t)context;

    Py_ssize_t total = PyList_GET_SIZE(packets);
    long long sent = 0, octets = 0, errors = 0;
    int count = 0;
    for (Py_ssize_t i = 0; i < total; i++) {
        PyObject *item = PyList_GET_ITEM(packets, i);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "packets must be bytes");
            return NULL;
        }
        Py_ssize_t size = PyBytes_GET_SIZE(item);
        if (size < 12 || size > MAX_PACKET) {
            errors++;
            continue;
        }
        unsigned char *buffer = buffers[count];
        memcpy(buffer, PyBytes_AS_STRING(item), (size_t)size);
        int length = (int)size;
        if (protect(ctx, buffer, &length) != 0 || length <= 0 ||
            length > MAX_PACKET + TRAILER) {
            errors++;
            continue;
        }
        iovecs[count].iov_base = buffer;
        iovecs[count].iov_len = (size_t)length;
        struct msghdr *header = &messages[count].msg_hdr;
        header->msg_name = &remote;
        header->msg_namelen = remote_length;
        header->msg_iov = &iovecs[count];
        header->msg_iovlen = 1;
        header->msg_control = NULL;
        header->msg_controllen = 0;
        header->msg_flags = 0;
        count++;
        if (count == BATCH) {
            int done = send_all(fd, count);
            for (int k = 0; k < done; k++) {
                octets += (long long)iovecs[k].iov_len;
            }
            sent += done;
            errors += count - done;
            count = 0;
        }
    }
    if (count) {
        int done = send_all(fd, count);
        for (int k = 0; k < done; k++) {
            octets += (long long)iovecs[k].iov_len;
        }
        sent += done;
        errors += count - done;
    }
    return Py_BuildValue("(LLL)", sent, octets, errors);
}

static PyMethodDef methods[] = {
    {"send_batch", send_batch, METH_VARARGS,
     "send_batch(fd, host, port, protect, context, packets) -> (sent, bytes, errors)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_sendmmsg",
    "SRTP protect and sendmmsg for a batch of RTP packets (see batch.py)", -1, methods,
};

PyMODINIT_FUNC
PyInit__sendmmsg(void)
{
    return PyModule_Create(&module);
}
