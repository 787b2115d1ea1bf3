/*
 * agent_mig.h - the agents' end of a live migration stream: a migration/
 * stream (TLS with the cluster key, or plain, or RDMA) to the peer agent,
 * the identity of the transaction in a CONTROL chunk, and a relay between
 * that stream and one end of a socketpair that the guest's driver reads
 * and writes as if it were the connection itself (docs/migration.md).
 *
 * The drivers' protocols go both ways (the container destination answers
 * "ok", QEMU may use a return path), so the relay runs one thread per
 * direction. Each direction ends with an END chunk when the local driver's
 * side is shut down; an idle direction carries an empty DATA chunk every
 * second, so that the peer's I/O timeout only fires when the peer is gone.
 */
#ifndef HA_AGENT_MIG_H
#define HA_AGENT_MIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "hactl_states.h"
#include "migration.h"

/*
 * One agent's side of a migration transaction: the protocol's
 * MigrationPhase (its names are proto/hactl_states.c's, reported in
 * MigrationReport.phase). Every change goes through agent_mig_phase_set()
 * and the one table in agent_mig.c:
 *
 *   none -> transferring -> sent (source) | received (destination) | failed
 *        -> finishing -> finished
 *
 * A phase may go to finishing or finished once the cluster decided (commit
 * or abort), a failed finish is tried again (finishing -> finishing, and
 * finished -> finishing for a copy found at restart), none -> finishing
 * discards such a copy, and a new transaction of the guest starts again
 * from none whatever the last one's phase.
 */
enum agent_mig_phase {
	AGENT_MIG_NONE = HACTL__MIGRATION_PHASE__PHASE_NONE,
	AGENT_MIG_TRANSFERRING = HACTL__MIGRATION_PHASE__PHASE_TRANSFERRING,
	AGENT_MIG_SENT = HACTL__MIGRATION_PHASE__PHASE_SENT,
	AGENT_MIG_RECEIVED = HACTL__MIGRATION_PHASE__PHASE_RECEIVED,
	AGENT_MIG_FINISHING = HACTL__MIGRATION_PHASE__PHASE_FINISHING,
	AGENT_MIG_FINISHED = HACTL__MIGRATION_PHASE__PHASE_FINISHED,
	AGENT_MIG_FAILED = HACTL__MIGRATION_PHASE__PHASE_FAILED,
	AGENT_MIG_PHASE_MAX = HA_MIGRATION_PHASE_MAX
};

/* "transferring"; "unknown" out of range. */
const char *agent_mig_phase_str(enum agent_mig_phase p);

/* Whether the table allows @from -> @to. */
bool agent_mig_phase_ok(enum agent_mig_phase from, enum agent_mig_phase to);

/*
 * Moves *@phase to @to when it is @expected and the table allows the
 * step: returns 0. Otherwise logs the refused step (naming @guest and
 * migration @id), leaves *@phase and returns -EINVAL.
 */
int agent_mig_phase_set(enum agent_mig_phase *phase, enum agent_mig_phase expected,
			enum agent_mig_phase to, const char *guest, uint64_t id);

/* What one migration stream is for. */
struct agent_mig_params {
	const struct ha_config *cfg;   /* [migration] key_file, encrypt, transport */
	const char *guest;
	uint64_t id;                   /* the cluster's transaction id */
	const char *transport;         /* "tcp", "rdma"; NULL or "": the config's */
	uint64_t rate;                 /* payload bytes/s source to destination, 0 = none */
	const char *listen_addr;       /* destination: bind here; NULL or "" = every address */
};

struct agent_mig_xfer;

/*
 * Where a destination listens: the configured [migration] listen_address
 * ("*" = every address, NULL returned), else @cluster_addr, this host's
 * cluster address as the cluster state knows it (the one sources connect
 * to); NULL (every address) when neither is known.
 */
const char *agent_mig_listen_addr(const struct ha_config *cfg, const char *cluster_addr);

/*
 * This host's migration address: the first of @addrs (numeric addresses,
 * in the host's interface order) inside the [migration] network @network.
 * Returns 0 with it in @out, -ENOENT when @network is empty or holds none
 * of them, -EINVAL when it does not parse. Pure (for the unit test).
 */
int agent_mig_pick_address(const char *network, const char *const *addrs, size_t n,
			   char *out, size_t len);

/* The same over the addresses of this host's interfaces that are up
 * (getifaddrs); -errno of getifaddrs too. */
int agent_mig_local_address(const char *network, char *out, size_t len);

/*
 * Destination: listens on @p->listen_addr (every address when none), any
 * port, with the configured key and transport. Returns 0 and *out (freed with mig_listener_free()),
 * or -errno with "what: why" in @err (e.g. the key file's problem).
 */
int agent_mig_listen(const struct agent_mig_params *p, struct mig_listener **out,
		     char *err, size_t errlen);

/*
 * Destination: waits up to @timeout_ms for the source of transaction @p,
 * runs the handshakes and answers its CONTROL hello. Peers that fail the
 * key exchange or name another transaction are refused and waited past
 * (logged); the last refusal is in @err when none came. Returns 0 and *out.
 */
int agent_mig_accept(struct mig_listener *l, const struct agent_mig_params *p,
		     int timeout_ms, struct agent_mig_xfer **out, char *err, size_t errlen);

/*
 * Source: connects to @addr:@port, sends the CONTROL hello and reads the
 * destination's. Returns 0 and *out, or -errno with "peer: what" in @err.
 */
int agent_mig_connect(const struct agent_mig_params *p, const char *addr, uint16_t port,
		      struct agent_mig_xfer **out, char *err, size_t errlen);

/*
 * Starts the relay; *driver_fd is the end the driver gets (owned by @x:
 * do not close it). Returns 0 or -errno with the reason in @err.
 */
int agent_mig_relay_start(struct agent_mig_xfer *x, int *driver_fd, char *err,
			  size_t errlen);

/*
 * After the driver returned @driver_rc (with @driver_err): on success,
 * ends the local direction and waits for the peer's END (its driver is
 * done too); on failure, tells the peer why (ABORT) and stops the relay.
 * Returns 0, or the first error of the migration (the stream's, the
 * relay's or the driver's, whichever came first) with its message in
 * @err.
 */
int agent_mig_finish(struct agent_mig_xfer *x, int driver_rc, const char *driver_err,
		     char *err, size_t errlen);

/* Stops everything soon: the driver sees its socket shut down and the
 * stream fails with -ECANCELED. Any thread, while @x lives. */
void agent_mig_cancel(struct agent_mig_xfer *x);

/* Counters of the stream; any thread, while @x lives. */
void agent_mig_counters(const struct agent_mig_xfer *x, struct mig_counters *c);

/* "TLS1.3 AES-128-GCM", "plain", "rdma". Valid while @x lives. */
const char *agent_mig_cipher(const struct agent_mig_xfer *x);
const char *agent_mig_transport(const struct agent_mig_xfer *x);

/* Stops the relay if it runs, closes the stream; accepts NULL. */
void agent_mig_free(struct agent_mig_xfer *x);

#endif
