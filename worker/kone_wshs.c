/* kone_wshs.c: see kone_wshs.h. Everything is read by length (the answer is a server's bytes,
 * NULs included); the reasons given are fixed texts, never the server's words. */
#include "kone_wshs.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include "kd_str.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"; /* RFC 6455 4.2.2 */

bool kd_wshs_accept_of(const char *key, char out[29])
{
    char in[KD_WSHS_KEY_LEN + sizeof ws_guid];
    if (strlen(key) > KD_WSHS_KEY_LEN)
        return false;
    int n = snprintf(in, sizeof in, "%s%s", key, ws_guid);
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)in, (size_t)n, md);
    return EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH) == 28;
}

size_t kd_wshs_start(kd_wshs *h, const char *host, int port, const char *path, const char *protocol,
                     char *out, size_t cap)
{
    unsigned char nonce[16];
    h->len = 0;
    h->protocol = protocol;
    if (RAND_bytes(nonce, sizeof nonce) != 1)
        return 0;
    EVP_EncodeBlock((unsigned char *)h->key, nonce, sizeof nonce);
    /* The headers libwebsockets' client sent before (kone-client.md): KONE asks for the
     * koneapi subprotocol; Host carries the port when it is not https' own. */
    char hostport[300];
    if (port == 443)
        kd_str_copy(hostport, sizeof hostport, host);
    else
        snprintf(hostport, sizeof hostport, "%s:%d", host, port);
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Origin: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Pragma: no-cache\r\n"
                     "Cache-Control: no-cache\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Protocol: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "\r\n",
                     path, hostport, host, h->key, protocol);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* The end of the header block (just past its blank line), or 0 when it is not whole. */
static size_t block_end(const char *b, size_t len, size_t from)
{
    for (size_t i = from; i < len; i++) {
        if (b[i] != '\n')
            continue;
        size_t j = i + 1;
        if (j < len && b[j] == '\r')
            j++;
        if (j < len && b[j] == '\n')
            return j + 1;
    }
    return 0;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t';
}

/* Does the comma-separated list v (vl bytes) hold token t (any case)? */
static bool has_token(const char *v, size_t vl, const char *t)
{
    size_t tl = strlen(t), i = 0;
    while (i < vl) {
        while (i < vl && (is_ws(v[i]) || v[i] == ','))
            i++;
        size_t s = i;
        while (i < vl && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && is_ws(v[e - 1]))
            e--;
        if (e - s == tl && !strncasecmp(v + s, t, tl))
            return true;
    }
    return false;
}

static bool value_is(const char *v, size_t vl, const char *want)
{
    return vl == strlen(want) && !memcmp(v, want, vl);
}

static kd_wshs_result refuse(char *why, size_t cap, const char *text)
{
    kd_str_copy(why, cap, text);
    return KD_WSHS_REFUSED;
}

/* The status line: "HTTP/1.x NNN ...". */
static int status_of(const char *l, size_t ll)
{
    if (ll < 12 || memcmp(l, "HTTP/1.", 7) != 0 || l[8] != ' ')
        return 0;
    int s = 0;
    for (int i = 9; i < 12; i++) {
        if (l[i] < '0' || l[i] > '9')
            return 0;
        s = s * 10 + (l[i] - '0');
    }
    return ll == 12 || l[12] == ' ' ? s : 0;
}

/* The length of the line at p (ending at nl, or at end without one), its CR left out. */
static size_t line_len(const char *p, const char *nl, const char *end)
{
    size_t n = (size_t)((nl ? nl : end) - p);
    return n > 0 && p[n - 1] == '\r' ? n - 1 : n;
}

kd_wshs_result kd_wshs_check(const char *hdr, size_t len, const char *key, const char *protocol,
                             int *status, char *why, size_t why_cap)
{
    const char *p = hdr, *end = hdr + len;
    const char *nl = memchr(p, '\n', len);
    size_t ll = line_len(p, nl, end);
    *status = status_of(p, ll);
    if (!*status)
        return refuse(why, why_cap, "upgrade answer: no HTTP status line");
    if (*status != 101)
        return refuse(why, why_cap, "upgrade refused");
    bool upgrade = false, connection = false, accept = false, proto_ok = true;
    char want[29];
    if (!kd_wshs_accept_of(key, want))
        return refuse(why, why_cap, "upgrade: no key");
    p = nl ? nl + 1 : end;
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        ll = line_len(p, nl, end);
        const char *next = nl ? nl + 1 : end;
        if (!ll)
            break; /* the blank line */
        const char *colon = memchr(p, ':', ll);
        if (!colon || colon == p || is_ws(p[0]))
            return refuse(why, why_cap, "upgrade answer: malformed header line");
        size_t nlen = (size_t)(colon - p);
        const char *v = colon + 1, *ve = p + ll;
        while (v < ve && is_ws(*v))
            v++;
        while (ve > v && is_ws(ve[-1]))
            ve--;
        size_t vl = (size_t)(ve - v);
#define NAME_IS(s) (nlen == sizeof(s) - 1 && !strncasecmp(p, s, nlen))
        if (NAME_IS("Upgrade"))
            upgrade = has_token(v, vl, "websocket");
        else if (NAME_IS("Connection"))
            connection = has_token(v, vl, "upgrade");
        else if (NAME_IS("Sec-WebSocket-Accept")) {
            if (accept)
                return refuse(why, why_cap, "upgrade answer: Sec-WebSocket-Accept twice");
            accept = true;
            if (!value_is(v, vl, want))
                return refuse(why, why_cap, "upgrade answer: wrong Sec-WebSocket-Accept");
        } else if (NAME_IS("Sec-WebSocket-Protocol"))
            proto_ok = value_is(v, vl, protocol);
        else if (NAME_IS("Sec-WebSocket-Extensions") && ve > v)
            return refuse(why, why_cap, "upgrade answer: an extension nobody asked for");
#undef NAME_IS
        p = next;
    }
    if (!upgrade)
        return refuse(why, why_cap, "upgrade answer: no Upgrade: websocket");
    if (!connection)
        return refuse(why, why_cap, "upgrade answer: no Connection: upgrade");
    if (!accept)
        return refuse(why, why_cap, "upgrade answer: no Sec-WebSocket-Accept");
    if (!proto_ok)
        return refuse(why, why_cap, "upgrade answer: another subprotocol than koneapi");
    return KD_WSHS_OK;
}

kd_wshs_result kd_wshs_feed(kd_wshs *h, const char *in, size_t len, size_t *used, int *status,
                            char *why, size_t why_cap)
{
    size_t old = h->len, room = KD_WSHS_MAX - h->len, take = len < room ? len : room;
    memcpy(h->buf + h->len, in, take);
    h->len += take;
    *status = 0;
    /* the blank line may start up to 2 bytes before what came now ("\r\n" + "\r\n") */
    size_t e = block_end(h->buf, h->len, old > 3 ? old - 3 : 0);
    if (!e) {
        *used = take;
        if (h->len < KD_WSHS_MAX)
            return KD_WSHS_MORE;
        snprintf(why, why_cap, "upgrade answer: header longer than %d bytes", KD_WSHS_MAX);
        return KD_WSHS_REFUSED;
    }
    *used = e - old;
    return kd_wshs_check(h->buf, e, h->key, h->protocol, status, why, why_cap);
}
