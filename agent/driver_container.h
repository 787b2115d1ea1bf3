/*
 * driver_container.h - private header of the container driver
 * (driver_container*.c): the guest network, helper programs and
 * checkpoint/restore; cgroups and processes are the host layer's
 * (host_cgroup.h, host_proc.h). Nothing outside these files includes it; the agent
 * sees only agent_driver_container_ops (driver.h).
 *
 * Every function here is a blocking call for a worker thread, returns 0 or
 * -errno and, where it takes @err (AGENT_ERR_LEN bytes, may be NULL), fills
 * it with one line naming what failed and where. No global mutable state.
 */
#ifndef HA_AGENT_DRIVER_CONTAINER_H
#define HA_AGENT_DRIVER_CONTAINER_H

#include <net/if.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "driver.h"
#include "host_cgroup.h"
#include "host_net.h"
#include "host_proc.h"

#define CTR_PATH 512          /* every path the driver builds */
#define CTR_NAME_MAX 64       /* guest name: [A-Za-z0-9_.-], not "." or ".." */
#define CTR_CMD_MAX 4096      /* spec->command, bytes */
#define CTR_ARGS_MAX 64       /* spec->command, words */


/* ---- helper programs (driver_container_exec.c) ---------------------- */

/* Finds @name (ip, cp, rm) in the standard system directories; 0 and
 * @out set, or -ENOENT. */
int ctr_tool_find(const char *name, char *out, size_t outlen);
/*
 * Runs @argv (argv[0] an absolute path) with stdin on /dev/null, killing it
 * after @timeout_ms. When @netns_fd >= 0 the child first joins that network
 * namespace. The first line of what it writes to stdout/stderr lands in
 * @msg (may be NULL). Returns its exit status (0..255; 128+N for signal N),
 * or -errno / -ETIMEDOUT when it could not run or ran too long.
 */
int ctr_tool_run(char *const argv[], int netns_fd, uint32_t timeout_ms,
		 char *msg, size_t msglen);
/* Removes @path recursively without crossing into other file systems
 * (rm -rf --one-file-system); a missing @path is success. */
int ctr_tree_remove(const char *path, uint32_t timeout_ms, char *err);
/* Copies the directory @src to @dst (which must not exist) keeping
 * owners, modes, xattrs (overlay whiteouts and opaque marks) and device
 * nodes (cp -a). */
int ctr_tree_copy(const char *src, const char *dst, uint32_t timeout_ms, char *err);

/* ---- network (driver_container_net.c) -------------------------------- */

/* The host side's name: hv-<name>, or hv-<prefix><hash> when long. */
void ctr_net_veth_name(const char *name, char out[IFNAMSIZ]);
/* The guest side's MAC, stable for a name (locally administered). */
void ctr_net_mac(const char *name, char out[18]);
/*
 * Creates the veth pair for the container whose init is @pid: the host side
 * @veth on spec->bridge, the guest side eth0 inside the container's network
 * namespace with spec->ip, lo up, default route via spec->gateway.
 */
int ctr_net_setup(const struct agent_guest_spec *spec, const char *veth, pid_t pid,
		  uint32_t timeout_ms, char *err);
/* Deletes the host side @veth (and so its peer); missing is fine. */
int ctr_net_teardown(const char *veth, uint32_t timeout_ms, char *err);
/*
 * A gratuitous ARP from eth0 of the container whose init is @pid, for the
 * IPv4 address of @cidr, so that peers and bridges learn the guest's new
 * port (after a migration, after a restore on another host); 0 for other
 * addresses.
 */
int ctr_net_announce(pid_t pid, const char *cidr, char *err);

/* ---- checkpoint / restore (driver_container_criu.c) ------------------- */

struct agent_guest;

/* What the CRIU calls need from a guest. */
struct ctr_ckpt_target {
	const struct agent_guest_spec *spec;
	const struct host_cgroup *cg;
	const char *root;          /* run_dir/root: the overlay */
	const char *veth;          /* host side name */
	const char *criu_path;     /* from the agent config */
	pid_t pid;                 /* init, host pid (dump) */
};

/*
 * Dumps the container into @images (an existing directory). With
 * @leave_running the guest keeps running (and stays frozen when it was
 * frozen before, so that the caller can copy storage of the same instant).
 */
int ctr_criu_dump(const struct ctr_ckpt_target *t, const char *images,
		  bool leave_running, uint32_t timeout_ms, char *err);
/*
 * Restores from @images, detached, into the guest's cgroups; *pid is the
 * new init's host pid. The tree runs and the veth's host side is on the
 * bridge; with @stopped (a migration's destination) CRIU leaves the tree
 * stopped (SIGSTOP) and the veth off the bridge.
 */
int ctr_criu_restore(const struct ctr_ckpt_target *t, const char *images,
		     uint32_t timeout_ms, bool stopped, pid_t *pid, char *err);

/* The external resources a container's dump names (console mount, veth):
 * the text lives in the struct, list points into it. */
struct ctr_criu_external {
	char mnt[64];
	char veth[64];
	const char *list[2];
	size_t n;
};
struct agent_criu_dump_opts;
/*
 * What every dump of a container sets (snapshot and migration alike): the
 * tree, established TCP (without connections not accepted yet), file
 * locks, soft cgroup management, the freezer, the external resources
 * (text in @x, which must live as long as @o). The rest of @o is zero.
 */
void ctr_criu_dump_base(const struct ctr_ckpt_target *t, struct ctr_criu_external *x,
			struct agent_criu_dump_opts *o);
/* The CRIU binary for the agent's setting @path ("criu" or empty: the one
 * deploy/install-criu put in place). */
const char *ctr_criu_bin(const char *path);
/* Fills the CRIU facts (version, dirty tracking, lazy pages). */
int ctr_criu_probe(const char *criu_path, Hactl__HostFacts *facts);

/* ---- the guest object, for live migration (driver_container.c) ------------ */

/* Fills @t from the guest (its pid read back from the run directory when
 * the object has none); 0 when the guest runs, -ESRCH when not (@t is
 * filled either way). @t points into @g: valid while @g lives. */
int ctr_guest_target(struct agent_guest *g, struct ctr_ckpt_target *t);
/*
 * A guest object for @spec with everything a CRIU restore into it needs:
 * leftovers of an earlier instance removed, run directory, cgroups with
 * the limits of @spec, console log and the overlay root mounted (lower
 * spec->rootfs, upper on spec->data_dir, which is used as it is). -EBUSY
 * when the guest runs here. On success the caller owns *out (guest_free op)
 * and removes what it set up with ctr_guest_clean().
 */
int ctr_guest_prepare(struct agent_driver *d, const struct agent_guest_spec *spec,
		      struct agent_guest **out, char *err);
/* Makes the restored tree whose init is @pid (host pid) the guest's:
 * records it in the run directory, as start() does. */
int ctr_guest_adopt(struct agent_guest *g, pid_t pid, char *err);
/* Removes the host side of a guest whose processes are gone or frozen
 * (those are killed): processes, overlay mount, veth, cgroups, pid file,
 * and with @run_dir the run directory. Never the writable layer. */
int ctr_guest_clean(struct agent_guest *g, bool run_dir, char *err);

/* The driver's ops table (driver_container.c); migration frees guests with
 * its guest_free. */
extern const struct agent_driver_ops agent_driver_container_ops;

/* ---- live migration (driver_container_mig.c) -------------------------------
 * The three migration operations of agent_driver_container_ops (driver.h);
 * the stream format is described in docs/containers.md. */

int ctr_mig_send(struct agent_guest *g, int fd, const struct agent_mig_opts *o,
		 struct agent_mig_progress *p, char *err);
int ctr_mig_recv(struct agent_driver *d, const struct agent_guest_spec *spec, int fd,
		 const struct agent_mig_opts *o, struct agent_guest **out,
		 struct agent_mig_progress *p, char *err);
int ctr_mig_finish(struct agent_guest *g, bool source, bool commit, char *err);

#endif
