/*
 * storage.h - the storage backends of ha-agent.
 *
 * A guest's disk, writable layer and snapshots live on storage that more
 * than one host can reach. Before a host starts or restores a guest it
 * acquires the guest's storage (makes it writable here); after a clean stop
 * it releases it. One file per backend behind one ops table:
 *
 *   storage_dir.c   "dir":  a directory every host mounts (NFS, CephFS, the
 *                           local cluster's shared directory). Nothing to
 *                           switch; acquire and release prove that the
 *                           directory is there and takes durable writes.
 *   storage_drbd.c  "drbd": a DRBD resource replicated between hosts;
 *                           acquire = `drbdadm primary RES`, release =
 *                           `drbdadm secondary RES`.
 *
 * Rules, as for the guest drivers (driver.h):
 *  - Plain blocking calls returning 0 or -errno, run from the agent's worker
 *    threads, never from its event loop. Every call is bounded by its
 *    timeout: the work happens in a child process that is killed (with its
 *    process group) when the time is up, so a hung NFS server or a stuck
 *    drbdadm costs the caller at most @timeout_ms (0 = the default).
 *  - @err (may be NULL) gets one line naming what failed and where, with
 *    the tool's own words (drbdadm's stdout and stderr) when there are any.
 *  - Backends keep no state between calls: any host may call them for any
 *    resource at any time; the cluster (fencing, owner generation) decides
 *    who may.
 *  - Libraries log at debug at most; the caller logs the error once.
 */
#ifndef HA_AGENT_STORAGE_H
#define HA_AGENT_STORAGE_H

#include <stddef.h>
#include <stdint.h>

/* Used when a caller passes timeout_ms == 0. */
#define AGENT_STORAGE_DEFAULT_TIMEOUT_MS 30000u
/* Bound of state(), which takes no timeout. */
#define AGENT_STORAGE_STATE_TIMEOUT_MS 10000u

/* The roles state() writes. */
#define AGENT_STORAGE_ROLE_PRIMARY "primary"     /* writable from this host */
#define AGENT_STORAGE_ROLE_SECONDARY "secondary" /* present, not writable here */
#define AGENT_STORAGE_ROLE_DOWN "down"           /* drbd: configured, not up in the kernel */
#define AGENT_STORAGE_ROLE_LEN 16

struct agent_storage_ops {
	const char *name; /* the definition's [storage] backend: "dir", "drbd" */
	/*
	 * Whether this host can use the backend at all (drbd: kernel module
	 * loaded, drbdadm installed). 0 or -errno with @err filled.
	 */
	int (*probe)(char *err, size_t errlen);
	/*
	 * Makes @resource writable from this host. dir: @resource is an
	 * absolute directory path; drbd: a resource name of the DRBD
	 * configuration. drbd refuses (-EBUSY) while a connected peer is
	 * primary: the caller must have fenced the old owner first, and
	 * never forces. Idempotent: acquiring what this host holds is 0.
	 */
	int (*acquire)(const char *resource, uint32_t timeout_ms, char *err, size_t errlen);
	/*
	 * Clean stop: hands @resource back so that another host may acquire
	 * it (drbd: secondary; -EBUSY while something still holds the device
	 * open). dir: flushes the file system (syncfs) and checks it again.
	 * Idempotent.
	 */
	int (*release)(const char *resource, uint32_t timeout_ms, char *err, size_t errlen);
	/*
	 * Writes one of AGENT_STORAGE_ROLE_* into @role_out (at least
	 * AGENT_STORAGE_ROLE_LEN bytes) and returns 0; -errno when the role
	 * cannot be learnt (resource unknown, tool missing, timeout).
	 */
	int (*state)(const char *resource, char *role_out, size_t rolelen);
};

/* The backend called @name ("dir", "drbd"); NULL when unknown or NULL. */
const struct agent_storage_ops *agent_storage_find(const char *name);

extern const struct agent_storage_ops agent_storage_dir_ops;
extern const struct agent_storage_ops agent_storage_drbd_ops;

/*
 * drbd: the drbdadm to run. NULL (the default) finds drbdadm in PATH, then
 * /usr/sbin, /sbin and /usr/local/sbin. Call before any worker thread uses
 * the backend (the agent at startup, tests with a fake drbdadm); @path is
 * copied.
 */
int agent_storage_drbd_set_tool(const char *path);

/*
 * drbd, exposed for tests: the role in the output of `drbdadm role RES`
 * ("Primary", "Secondary", DRBD 8.4's "Primary/Secondary", "Unconfigured")
 * or of `drbdadm status RES` ("RES role:Primary ..."), written as an
 * AGENT_STORAGE_ROLE_*. 0, or -EPROTO when no role is found.
 */
int agent_storage_drbd_parse_role(const char *out, char *role, size_t rolelen);

/*
 * drbd, exposed for tests: the -errno for a drbdadm that exited with
 * @status and printed @out:
 *   -ENOENT     resource not in the configuration
 *   -ENODEV     resource not up in the kernel ("Unknown resource", "No such
 *               resource", "Unconfigured")
 *   -EBUSY      refused because of a peer or a user: (-1) multiple
 *               primaries, (-7) peer not outdated, (-10) refused by peer,
 *               (-12) device held open, (-19) concurrent change, ...
 *   -ESTALE     (-2) no UpToDate data reachable (this disk is outdated or
 *               inconsistent: promoting it would lose writes)
 *   -ENOTCONN   (-25) no quorum
 *   -ETIMEDOUT  (-23) DRBD's own timeout
 *   -EIO        anything else
 * 0 when @status is 0.
 */
int agent_storage_drbd_errno(int status, const char *out);

#endif
