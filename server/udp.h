/* server/udp.h - the shards' UDP sockets: one SO_REUSEPORT group per listen address with one
 * socket per shard (bind order = socket index = shard id), and a classic BPF program attached
 * to the group (SO_ATTACH_REUSEPORT_CBPF) that steers each datagram to
 *
 *     shard = (src_port XOR low 16 bits of the source address) mod nshards
 *
 * which udp_steer() computes identically in userspace, so the owner of an address is known
 * without asking the kernel (architecture.md §3, deps.md "Kernel steering for shards").
 * The program reads the IPv4 header at its fixed offsets (no IP options: UDP datagrams carrying
 * IPv4 options are vanishingly rare; such a datagram lands on a valid shard, possibly not the
 * one udp_steer names, which then forwards it as below) or the IPv6 header without extension
 * headers. The hash is not keyed (classic BPF cannot do SipHash): a sender choosing its source
 * port chooses its shard. That only affects load steering, never a table key: shard tables use
 * keyed hashes.
 *
 * Until the last socket of a group is bound and the program attached, the kernel spreads
 * datagrams by its own hash (or gives them all to the first socket); with server.steering =
 * forward no program is attached at all (kernels or sandboxes that refuse it). Either way a shard
 * checks each datagram against udp_steer / udp_steer_dtls and forwards one that belongs to
 * another shard (shard.c), so a device's datagrams always reach the shard holding its state.
 *
 * Threads: the control thread creates the groups before the shards start; each shard then owns
 * its socket. The socket set never changes at runtime (the kernel would re-hash flows).
 */
#ifndef LW_SERVER_UDP_H
#define LW_SERVER_UDP_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Opens n sockets bound to l (port 0: the first bind picks one and the others share it),
 * attaches the steering program when n > 1, and stores them in fds[0..n-1]. 0, or a negative
 * LW_E* code with err describing the problem (nothing left open). */
/* Kernel receive buffer (bytes) for the sockets opened after the call (server.udp_buffer); 0 =
 * the kernel's default. Any thread, before the groups open. */
void udp_set_buffer_size(size_t bytes);
/* Whether groups opened after the call get the steering program (server.steering = kernel, the
 * default) or none (forward). Any thread, before the groups open. */
void udp_set_kernel_steering(bool on);
int udp_group_open(const struct lw_listen *l, unsigned n, int *fds, char *err, size_t errlen);
/* The same for a CoAPS group: its program first steers DTLS records that carry a Connection ID
 * to the shard named by the CID's first byte (server-issued CIDs, lib/dtls/dtls.h: DTLS 1.2
 * record type 25 -> payload byte 11; DTLS 1.3 unified header with the C bit -> byte 1), so a
 * NAT-rebound device reaches the shard holding its session without a userspace hop; other
 * datagrams (and shard bytes >= n) use the address hash. */
int udp_group_open_dtls(const struct lw_listen *l, unsigned n, int *fds, char *err, size_t errlen);
/* The shard the CoAPS program picks for payload data from sa. */
unsigned udp_steer_dtls(const uint8_t *data, size_t len, const struct sockaddr *sa, unsigned n);
/* The shard the steering program picks for a datagram from sa (AF_INET / AF_INET6). */
unsigned udp_steer(const struct sockaddr *sa, unsigned n);
/* The port a bound socket listens on (0 on error). */
unsigned udp_bound_port(int fd);

#endif
