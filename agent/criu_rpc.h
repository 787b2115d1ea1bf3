/*
 * criu_rpc.h - a client for CRIU's RPC ("criu swrk").
 *
 * Every call spawns `<criu_path> swrk <fd>` on one end of a SOCK_SEQPACKET
 * socketpair, sends one criu_req (rpc.proto), reads criu_resp messages
 * until the final one (answering NOTIFY messages through an optional
 * callback), closes the socket so that CRIU exits on its own and reaps it.
 * CRIU is never SIGKILLed: a killed CRIU can leave its tasks seized or
 * frozen. On a timeout it gets SIGTERM and a grace period (see
 * AGENT_CRIU_TERM_GRACE_MS).
 *
 * All calls block (the agent runs them in worker threads, see driver.h),
 * keep no global state, and may run concurrently in several threads.
 * They return 0 or -errno; on failure @err (may be NULL) gets one line
 * naming the operation, the pid or directory, CRIU's cr_errno / errmsg
 * when it sent one, the last error line of CRIU's log and the log's path.
 *
 * Without CRIU's RPC schema at build time (agent/criu.cmake did not find
 * rpc.proto, HAVE_CRIU_RPC undefined) every call returns -ENOTSUP with a
 * message saying so.
 *
 * Options structs: zero-initialise them (designated initialisers); every
 * field has a documented default for zero / NULL / false, and new fields
 * are only ever added with zero meaning "as before".
 */
#ifndef HA_AGENT_CRIU_RPC_H
#define HA_AGENT_CRIU_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Where deploy/install-criu puts CRIU (a patched binary, see docs/criu.md). */
#define AGENT_CRIU_DEFAULT_PATH "/opt/hactl/criu/bin/criu"

/* Defaults for timeout_ms == 0. */
#define AGENT_CRIU_DEFAULT_TIMEOUT_MS (300u * 1000u)
#define AGENT_CRIU_PROBE_TIMEOUT_MS (60u * 1000u)
/* After a timeout: SIGTERM, then this long for CRIU to exit. */
#define AGENT_CRIU_TERM_GRACE_MS (10u * 1000u)
/* Largest criu_resp accepted (bigger ones are rejected, -EMSGSIZE). */
#define AGENT_CRIU_MAX_MSG (64u * 1024u)
/* Largest list (ext_mnt, veth, external, inherit_fd, cg_root) accepted. */
#define AGENT_CRIU_MAX_LIST 256u

/* What CRIU can do on this host (agent_criu_probe()). */
struct agent_criu_caps {
	char version[32];      /* "4.2.1", "" when not present */
	bool present;          /* binary runs and answers VERSION */
	bool mem_dirty_track;  /* soft-dirty: pre-dump / pre-copy works */
	bool lazy_pages;       /* userfaultfd: post-copy works */
	bool inet_dump_ok;     /* a trial dump of listening + established TCP
				* sockets on loopback succeeded */
};

/* --manage-cgroups modes; UNSET leaves CRIU's default. */
enum agent_criu_cg_mode {
	AGENT_CRIU_CG_UNSET = 0,
	AGENT_CRIU_CG_IGNORE,
	AGENT_CRIU_CG_NONE,
	AGENT_CRIU_CG_PROPS,
	AGENT_CRIU_CG_SOFT,
	AGENT_CRIU_CG_FULL,
	AGENT_CRIU_CG_STRICT,
	AGENT_CRIU_CG_MAX
};
const char *agent_criu_cg_mode_str(enum agent_criu_cg_mode m);

/* --network-lock methods; UNSET leaves CRIU's default (iptables). */
enum agent_criu_netlock {
	AGENT_CRIU_NETLOCK_UNSET = 0,
	AGENT_CRIU_NETLOCK_IPTABLES,
	AGENT_CRIU_NETLOCK_NFTABLES,
	AGENT_CRIU_NETLOCK_SKIP,
	AGENT_CRIU_NETLOCK_MAX
};
const char *agent_criu_netlock_str(enum agent_criu_netlock m);

/* A key/value pair: ext_mnt (--ext-mount-map key:val), veth pairs
 * (--veth-pair if_in=if_out: key = name inside, val = name outside). */
struct agent_criu_kv {
	const char *key;
	const char *val;
};

/* An inherited fd (--inherit-fd fd[N]:key): @fd is ours, CRIU gets it. */
struct agent_criu_inherit_fd {
	const char *key;       /* e.g. "pipe:[1234]", "extRootNetNS" */
	int fd;
};

/* A cgroup root (--cgroup-root ctrl:path); ctrl NULL = all controllers. */
struct agent_criu_cg_root {
	const char *ctrl;
	const char *path;
};

/*
 * A NOTIFY message from CRIU (requested by setting a notify callback):
 * @script is "pre-dump", "post-dump", "pre-restore", "post-restore",
 * "network-lock", "network-unlock", "setup-namespaces",
 * "post-setup-namespaces", "pre-resume", "post-resume",
 * "orphan-pts-master", "status-ready" ... ; @pid the root task where CRIU
 * sends one (0 otherwise); @fd a descriptor CRIU passed along (the pty
 * master for "orphan-pts-master"), -1 otherwise: it is closed after the
 * callback returns, dup() it to keep it.
 */
struct agent_criu_notify {
	const char *script;
	pid_t pid;
	int fd;
};
/* Returns 0 to let CRIU go on, anything else makes it fail the request. */
typedef int (*agent_criu_notify_fn)(const struct agent_criu_notify *n,
				    void *opaque);

/* Common to every request. */
struct agent_criu_common_opts {
	const char *images_dir; /* required: opened here, passed as an fd */
	const char *work_dir;   /* logs, lazy-pages socket; NULL = images_dir */
	const char *log_file;   /* in work_dir; NULL = "<op>.log" */
	int log_level;          /* 0 = 4 (debug, needed to diagnose), 1..4 */
	uint32_t timeout_ms;    /* 0 = AGENT_CRIU_DEFAULT_TIMEOUT_MS */
	agent_criu_notify_fn notify;  /* NULL = no notifications */
	void *notify_opaque;
};

struct agent_criu_dump_opts {
	struct agent_criu_common_opts c;
	pid_t pid;              /* required: root task of the tree */
	bool pre_dump;          /* CRIU_REQ_TYPE__PRE_DUMP: memory only, task
				 * keeps running; needs soft-dirty */
	bool leave_running;
	bool leave_stopped;     /* tasks stopped (SIGSTOP) after the dump */
	bool track_mem;         /* keep soft-dirty tracking for the next dump */
	const char *parent_img; /* previous (pre-)dump, relative to images_dir */
	bool tcp_established;
	bool tcp_close;         /* close established connections (no repair) */
	bool tcp_skip_in_flight;
	bool ext_unix_sk;
	bool shell_job;
	bool file_locks;
	bool link_remap;
	bool evasive_devices;
	bool auto_dedup;
	bool orphan_pts_master; /* pty master handed over via notify fd */
	const char *root;       /* container rootfs (mount namespace root) */
	enum agent_criu_cg_mode manage_cgroups;
	const char *freeze_cgroup; /* freezer cgroup path of the container */
	enum agent_criu_netlock network_lock;
	const struct agent_criu_kv *ext_mnt; /* --ext-mount-map */
	size_t n_ext_mnt;
	const struct agent_criu_kv *veth_pairs;
	size_t n_veth_pairs;
	const char *const *external; /* --external (veth[..], mnt[..], ...) */
	size_t n_external;
	/* Page server to send pages to instead of images_dir (pre-copy), or
	 * with lazy_pages the address/port this dump serves pages on. */
	const char *ps_address;
	uint16_t ps_port;       /* 0 = no page server */
	int ps_fd;              /* 0 = none; else a connected socket of ours */
	bool lazy_pages;        /* post-copy: dump everything but the pages,
				 * then serve them on ps_address:ps_port
				 * until the destination has fetched all;
				 * the tasks stay stopped meanwhile and die
				 * at the end. The call returns only then;
				 * its notify callback gets "status-ready"
				 * when the images are written and pages
				 * are served: start the destination then */
	uint64_t ghost_limit;   /* bytes; 0 = CRIU's default */
	uint32_t empty_ns;      /* CLONE_NEW* flags: dump these netns etc.
				 * empty (recreated on restore) */
};

struct agent_criu_restore_opts {
	struct agent_criu_common_opts c;
	const char *root;       /* container rootfs to restore into */
	bool restore_detached;  /* the default of CRIU's RPC anyway: the tree
				 * is reparented when CRIU exits (to init, or
				 * to the caller if it is a child subreaper) */
	bool restore_sibling;   /* tree a child of the caller (rst_sibling) */
	bool leave_stopped;     /* tasks stopped (SIGSTOP) when CRIU lets go */
	bool tcp_established;
	bool tcp_close;
	bool ext_unix_sk;
	bool shell_job;
	bool file_locks;
	bool link_remap;
	bool evasive_devices;
	bool auto_dedup;
	bool orphan_pts_master;
	enum agent_criu_cg_mode manage_cgroups;
	const struct agent_criu_cg_root *cg_root;
	size_t n_cg_root;
	enum agent_criu_netlock network_lock;
	const struct agent_criu_kv *ext_mnt;
	size_t n_ext_mnt;
	const struct agent_criu_kv *veth_pairs;
	size_t n_veth_pairs;
	const char *const *external;
	size_t n_external;
	const struct agent_criu_inherit_fd *inherit_fd;
	size_t n_inherit_fd;
	bool lazy_pages;        /* post-copy: pages come from a lazy-pages
				 * daemon (agent_criu_lazy_pages()) running
				 * with the same work_dir */
};

/*
 * Probes CRIU at @criu_path (NULL = AGENT_CRIU_DEFAULT_PATH): VERSION,
 * FEATURE_CHECK (mem_track, lazy_pages) and a trial dump (leave_running,
 * tcp_established) of a throw-away child holding a listening and an
 * established TCP socket on 127.0.0.1, in a temporary directory removed
 * afterwards. Needs root for the trial dump (inet_dump_ok false without).
 * Returns 0 with *out filled when CRIU answered VERSION (@err then says
 * why the trial dump failed, "" when it did not); -errno with *out zeroed
 * and @err set when CRIU is missing or broken. lazy_pages also requires
 * fs.pipe-max-size >= 4 MiB (deploy/install-criu sets it).
 */
int agent_criu_probe(const char *criu_path, struct agent_criu_caps *out,
		     char *err, size_t errlen);

/*
 * Asks CRIU whether it supports the features CRIU calls "mem_track" and
 * "lazy_pages" on this kernel. Either output may be NULL.
 */
int agent_criu_check_features(const char *criu_path, bool *mem_track,
			      bool *lazy_pages, char *err, size_t errlen);

/* Dumps (or pre-dumps) the process tree rooted at o->pid. */
int agent_criu_dump(const char *criu_path, const struct agent_criu_dump_opts *o,
		    char *err, size_t errlen);

/*
 * Restores the tree in o->c.images_dir. *pid_out (may be NULL) gets the
 * pid of its root task (the same pid it had when dumped, as seen from
 * its parent's pid namespace: that pid must be free, so a dumped task
 * must have been reaped). A restored task whose images carry a parent
 * death signal gets it as soon as CRIU exits, unless restore_sibling.
 */
int agent_criu_restore(const char *criu_path,
		       const struct agent_criu_restore_opts *o, pid_t *pid_out,
		       char *err, size_t errlen);

struct agent_criu_ps_opts {
	struct agent_criu_common_opts c; /* images_dir: where pages go */
	const char *address;    /* listen address; NULL = all */
	uint16_t port;          /* 0 = CRIU picks one (see *port_out) */
	int fd;                 /* 0 = none; else an accepted socket of ours */
};

/*
 * Starts a page server (pre-copy destination, CRIU_REQ_TYPE__PAGE_SERVER_CHLD)
 * that receives pages into o->c.images_dir and exits after one dump
 * (or pre-dump) connected and finished. *pid_out and *port_out (each may
 * be NULL) get its pid and listening port (o->port 0: CRIU picks one).
 * It runs on after the call; it is reparented to init, or to the caller
 * where the caller is a child subreaper: agent_criu_child_wait() waits
 * for its end either way; kill(pid, SIGTERM) stops it (it holds no
 * tasks). o->c.notify is not used.
 */
int agent_criu_page_server(const char *criu_path,
			   const struct agent_criu_ps_opts *o, pid_t *pid_out,
			   uint16_t *port_out, char *err, size_t errlen);

struct agent_criu_lazy_opts {
	struct agent_criu_common_opts c; /* images_dir: the restore's images;
					  * work_dir: the restore's work_dir */
	const char *address;    /* source's page server (required) */
	uint16_t port;          /* required */
};

/*
 * Starts the lazy-pages daemon for a post-copy restore (CRIU has no RPC
 * request for it: this runs `criu lazy-pages --page-server` directly) and
 * returns once it listens for the restore, which must then run with
 * lazy_pages and the same work_dir. It fetches pages from the dumping
 * source at address:port and exits when all are copied. It is a child of
 * the caller: reap it with agent_criu_child_wait().
 */
int agent_criu_lazy_pages(const char *criu_path,
			  const struct agent_criu_lazy_opts *o, pid_t *pid_out,
			  char *err, size_t errlen);

/*
 * Waits up to @timeout_ms (0 = AGENT_CRIU_DEFAULT_TIMEOUT_MS) for a page
 * server or lazy-pages daemon started above to exit; 0 when it exited
 * with status 0, -ETIMEDOUT (still running, still ours to reap), -EIO
 * (failed: @err says how; the log is in its work_dir).
 */
int agent_criu_child_wait(pid_t pid, uint32_t timeout_ms, char *err,
			  size_t errlen);

/*
 * One criu_resp as plain, checked values: what the calls above act on.
 * Exposed for tests/fuzz/fuzz_criu_resp.c. Strings are NUL-terminated,
 * cut to their size, and non-printable bytes replaced by '?'.
 */
struct agent_criu_resp {
	int type;               /* criu_req_type numbering of rpc.proto */
	bool success;
	int cr_errno;           /* 0 = none */
	char errmsg[256];       /* cr_errmsg; "" = none */
	char script[64];        /* NOTIFY: the script name */
	pid_t notify_pid;       /* NOTIFY: 0 = none */
	pid_t restore_pid;      /* RESTORE: root task; 0 = none */
	bool dump_restored;     /* DUMP: dump_resp.restored */
	pid_t ps_pid;           /* PAGE_SERVER: 0 = none */
	int ps_port;            /* PAGE_SERVER: -1 = none, else 1..65535 */
	bool has_version;
	int version_major, version_minor, version_sublevel;
	char version_gitid[48];
	bool has_features;
	bool feat_mem_track, feat_lazy_pages;
	bool has_status;        /* WAIT_PID */
	int status;
};

/*
 * Decodes one criu_resp of @len bytes (at most AGENT_CRIU_MAX_MSG).
 * Returns 0, -EMSGSIZE (too long), -EBADMSG (not a criu_resp, unknown
 * type, pid or port out of range, a NOTIFY without a script), -ENOTSUP
 * (built without the schema). *out is zeroed on failure.
 */
int agent_criu_resp_decode(const uint8_t *buf, size_t len,
			   struct agent_criu_resp *out);

#endif
