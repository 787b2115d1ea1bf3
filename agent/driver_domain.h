/*
 * driver_domain.h - private header of the domain driver
 * (driver_domain*.c): the guest object, the run directory's record and
 * what the sections share of running QEMU. Nothing outside these files
 * includes it; the agent sees only agent_driver_domain_ops (driver.h).
 *
 *   driver_domain.c       the guest object, the record, the operations
 *                         (probe, create, attach, start, stop, kill,
 *                         destroy, state, usage) and the ops table
 *   driver_domain_qemu.c  the accelerator, QEMU's command line (built in
 *                         one place for every start), launching QEMU and
 *                         the QMP steps the others share
 *   driver_domain_ckpt.c  checkpoint into a directory and restore from it
 *   driver_domain_mig.c   live migration: send, receive, finish
 *
 * Every function here is a blocking call for a worker thread, returns 0 or
 * -errno and, where it takes @err (AGENT_ERR_LEN bytes, may be NULL), fills
 * it with one line naming what failed and where.
 */
#ifndef HA_AGENT_DRIVER_DOMAIN_H
#define HA_AGENT_DRIVER_DOMAIN_H

#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "driver.h"
#include "host_cgroup.h"
#include "qmp_client.h"

#define DOM_MACHINE "q35"
#define DOM_QMP_MS 5000            /* one QMP command */
#define DOM_CONNECT_MS 5000
#define DOM_RECORD "domain.json"
#define DOM_JSON_MAX (64 * 1024)   /* a record or a checkpoint manifest */
#define DOM_BANDWIDTH_MAX (1ULL << 40) /* bytes/s: a file, not a link */

/* ---- the guest object (driver_domain.c) ------------------------------- */

/* What run_dir/domain.json records about a running QEMU. */
struct dom_record {
	pid_t pid;
	uint64_t starttime;   /* /proc/PID/stat field 22 */
	char tap[IFNAMSIZ];
	char accel[8];
	char machine[64];
};

struct agent_guest {
	const struct agent_driver *d;
	char *name, *kernel, *initrd, *disk, *command, *ip, *gateway, *bridge;
	char *run_dir, *data_dir;
	uint64_t mem_kib;
	uint32_t cpus, cpu_weight, cpu_limit_pct;
	char qemu[PATH_MAX];
	char tap[IFNAMSIZ];
	uint8_t mac[6];
	struct host_cgroup cg;
	bool cg_ok;
	/* state() runs on the agent's event loop and must not block: it
	 * reads /proc and what the last operation found (atomics, as an
	 * operation may end meanwhile in a worker thread). */
	int busy;                        /* an operation runs */
	int op_state;                    /* what state() says meanwhile */
	int vm_state;                    /* RUNNING / PAUSED / FAILED while alive */
	bool stopped_by_us;
};

static inline void dom_op_begin(struct agent_guest *g, enum agent_guest_state s)
{
	__atomic_store_n(&g->op_state, (int)s, __ATOMIC_RELEASE);
	__atomic_store_n(&g->busy, 1, __ATOMIC_RELEASE);
}

/* Ends an operation; @vm is what QEMU's guest is now while it lives. */
static inline void dom_op_end(struct agent_guest *g, enum agent_guest_state vm)
{
	__atomic_store_n(&g->vm_state, (int)vm, __ATOMIC_RELEASE);
	__atomic_store_n(&g->busy, 0, __ATOMIC_RELEASE);
}

static inline int dom_path_join(char *out, size_t outlen, const char *dir, const char *name)
{
	int n = snprintf(out, outlen, "%s/%s", dir, name);

	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

/* run_dir/@name */
static inline int dom_rec_path(const struct agent_guest *g, const char *name, char *out,
			       size_t len)
{
	return dom_path_join(out, len, g->run_dir, name);
}

/*
 * Checks @spec and copies what the driver keeps into a new guest (caller
 * frees with dom_guest_free). @need_files: a kernel must be named.
 */
int dom_guest_new(const struct agent_driver *d, const struct agent_guest_spec *spec,
		  bool need_files, struct agent_guest **out, char *err);
void dom_guest_free(struct agent_guest *g);
/* The kernel, initrd and disk can be read (and the disk written). */
int dom_files_check(const struct agent_guest *g, char *err);

/* The recorded QEMU is alive: same pid, same start time, not a zombie. */
bool dom_rec_alive(const struct dom_record *r);
/* Waits until the recorded process is gone; true when it is. */
bool dom_rec_wait_gone(const struct dom_record *r, uint32_t timeout_ms);
int dom_rec_read(const struct agent_guest *g, struct dom_record *r);
int dom_rec_write(const struct agent_guest *g, const struct dom_record *r);
/* Removes the record, the pid file and the QMP socket. */
void dom_rec_remove(const struct agent_guest *g);
/* The record of a QEMU that runs now; -ESRCH when none does. */
int dom_guest_running(const struct agent_guest *g, struct dom_record *r);
/* run_dir/stopped: the domain was stopped by the driver. */
void dom_mark_stopped(const struct agent_guest *g, bool on);
/* rm -r of the run dir (nothing of the shared storage). */
int dom_run_dir_remove(const struct agent_guest *g, char *err);

/* Small JSON files: a string member into @dst ("" when absent), an
 * integer member (@def when absent), a whole object file of at most
 * DOM_JSON_MAX bytes (caller puts *out; -EBADMSG when not an object). */
void dom_json_str(char *dst, size_t len, json_object *o, const char *key);
int64_t dom_json_int(json_object *o, const char *key, int64_t def);
int dom_json_file_read(const char *path, json_object **out);

/* ---- running QEMU (driver_domain_qemu.c) ------------------------------ */

/* How QEMU is started: for a guest that boots, or for one that waits
 * for its state (restore, incoming migration). */
struct dom_launch {
	bool incoming;        /* -S -incoming defer */
	char accel[8];        /* "" = pick */
	char machine[64];     /* "" = DOM_MACHINE */
};

/* What QEMU is started for: a boot, a start that waits for the guest's
 * state (restore, incoming migration: -S -incoming defer), or the KVM
 * boot probe (the guest's kernel alone, no devices, output on stdout). */
enum dom_qemu_mode {
	DOM_QEMU_BOOT = 0,
	DOM_QEMU_INCOMING,
	DOM_QEMU_PROBE,
	DOM_QEMU_MODE_MAX
};

#define DOM_ARGV_MAX 64
#define DOM_CMDLINE_MAX 2048       /* x86 COMMAND_LINE_SIZE */

/* A QEMU command line and the words it built itself. */
struct dom_argv {
	const char *v[DOM_ARGV_MAX];  /* NULL terminated */
	unsigned n, n_buf;
	bool overflow;
	char buf[5][PATH_MAX + 128]; /* name, console path, serial chardev, QMP chardev, drive */
	char mem[32], smp[16], netdev[128], nic[128];
	char cmdline[DOM_CMDLINE_MAX];
	char dlog[PATH_MAX];          /* -D: QEMU's log once daemonized */
	char pidfile[PATH_MAX];
};

/*
 * QEMU's command line for @g, the one place it is built: @accel ("tcg",
 * "kvm") and @machine as given. The words point into @a and @g.
 */
int dom_qemu_argv(const struct agent_guest *g, enum dom_qemu_mode mode, const char *accel,
		  const char *machine, struct dom_argv *a, char *err);
/*
 * Starts QEMU for @g, daemonized; on success @rec describes it and is
 * recorded in run_dir. Nothing is left behind on failure.
 */
int dom_launch(struct agent_guest *g, struct dom_launch *lo, struct dom_record *rec,
	       uint32_t timeout_ms, char *err);
/* Connects to the guest's monitor (caller frees with qmp_client_free). */
int dom_qmp_open(const struct agent_guest *g, uint32_t timeout_ms, struct qmp_client **c,
		 char *err);
/* Waits until query-status says @want ("running", "paused"). */
int dom_wait_status(struct agent_guest *g, struct qmp_client *c, enum qmp_run_state want,
		    uint32_t timeout_ms, char *err);
/* A QMP command without a reply, with one string argument @key = @val
 * when @key is not NULL. */
int dom_simple_cmd(struct qmp_client *c, const char *cmd, const char *key, const char *val,
		   char *err);
/* announce-self: the guest's MAC from its new port. */
int dom_announce(struct qmp_client *c, char *err);
/* A QEMU run state other than "running" as a guest state. */
enum agent_guest_state dom_vm_state_of(enum qmp_run_state st);
/* Ends QEMU: QMP quit (when @c), then SIGTERM, then SIGKILL. */
int dom_force_quit(struct agent_guest *g, struct qmp_client *c, const struct dom_record *r,
		   char *err);
/* Tears down what a QEMU that is gone left: tap, cgroup, record; the
 * second as far as the run dir's record (if any) names it. */
void dom_after_exit(struct agent_guest *g, const struct dom_record *r);
void dom_clean_gone(struct agent_guest *g);
/* Ends a QEMU started for an incoming stream (restore, migration) that
 * failed, with what it left; @tail gets its log's last words. True when
 * QEMU had ended by itself (it refused the stream). */
bool dom_incoming_undo(struct agent_guest *g, struct qmp_client *c, const struct dom_record *r,
		       char *tail, size_t len);
/* The last two non-empty lines of a QEMU log from offset @from, and
 * what QEMU last complained about in the guest's logs. */
void dom_file_tail(const char *path, off_t from, char *out, size_t len);
void dom_log_tail(const struct agent_guest *g, char *out, size_t len);
/* "qcow2" or "raw", from the image's first bytes. */
const char *dom_disk_format(const char *path);

/* ---- the operations of the other sections ----------------------------- */

/* driver_domain_ckpt.c */
int dom_checkpoint(struct agent_guest *g, const char *dir, unsigned flags, char *err);
int dom_restore(struct agent_driver *d, const struct agent_guest_spec *spec, const char *dir,
		struct agent_guest **out, char *err);
/* driver_domain_mig.c */
int dom_migrate_send(struct agent_guest *g, int fd, const struct agent_mig_opts *o,
		     struct agent_mig_progress *p, char *err);
int dom_migrate_recv(struct agent_driver *d, const struct agent_guest_spec *spec, int fd,
		     const struct agent_mig_opts *o, struct agent_guest **out,
		     struct agent_mig_progress *p, char *err);
int dom_migrate_finish(struct agent_guest *g, bool source, bool commit, char *err);

#endif
