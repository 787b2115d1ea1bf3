/*
 * criu_rpc_req.c - the requests of the CRIU RPC client (see criu_rpc.h):
 * each builds its criu_req from the caller's options, with the image and
 * work directories passed as fds, and runs it on one swrk session
 * (criu_rpc.c, criu_rpc_int.h). Also the probe's trial dump, the page
 * server and lazy-pages daemons, and the wait for such a helper.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <qb/qblog.h>

#include "criu_rpc.h"
#include "criu_rpc_int.h"
#include "util.h"

#ifdef HAVE_CRIU_RPC

/* ---- requests ----------------------------------------------------------- */

/* Directory fds and the log path of a request. */
struct dirs {
	int images_fd;
	int work_fd;
};

static void dirs_close(struct dirs *d)
{
	if (d->images_fd >= 0) {
		close(d->images_fd);
	}
	if (d->work_fd >= 0) {
		close(d->work_fd);
	}
	d->images_fd = d->work_fd = -1;
}

static int open_dir(const char *what, const char *role, const char *path,
		    int *fd, char *err, size_t errlen)
{
	*fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*fd < 0) {
		int e = -errno;

		ha_errf(err, errlen, 0, "criu %s: %s %s: %s", what, role, path,
			strerror(-e));
		return e;
	}
	return 0;
}

/* Fills the common options of @o into @co and the session. */
static int common_setup(struct crs *s, const struct agent_criu_common_opts *c,
			const char *def_log, CriuOpts *co, struct dirs *d,
			char *err, size_t errlen)
{
	const char *log = c->log_file != NULL ? c->log_file : def_log;
	const char *wdir = c->work_dir != NULL ? c->work_dir : c->images_dir;
	int ret;

	d->images_fd = d->work_fd = -1;
	if (c->images_dir == NULL || c->images_dir[0] == '\0') {
		ha_errf(err, errlen, 0, "criu %s: no images directory given", s->what);
		return -EINVAL;
	}
	if (log[0] == '\0' || strchr(log, '/') != NULL || strlen(log) > NAME_MAX) {
		ha_errf(err, errlen, 0, "criu %s: log file name '%s' must be a plain file name",
			s->what, log);
		return -EINVAL;
	}
	if (c->log_level < 0 || c->log_level > 4) {
		ha_errf(err, errlen, 0, "criu %s: log level %d not in 0..4", s->what,
			c->log_level);
		return -EINVAL;
	}
	if ((size_t)snprintf(s->log_path, sizeof(s->log_path), "%s/%s", wdir, log) >=
	    sizeof(s->log_path)) {
		ha_errf(err, errlen, 0, "criu %s: log path %s/%s too long", s->what, wdir,
			log);
		return -ENAMETOOLONG;
	}
	if (stat(s->log_path, &s->log_before) < 0) {
		memset(&s->log_before, 0, sizeof(s->log_before));
	}
	ret = open_dir(s->what, "images directory", c->images_dir, &d->images_fd,
		       err, errlen);
	if (ret < 0) {
		return ret;
	}
	co->images_dir_fd = d->images_fd;
	if (c->work_dir != NULL) {
		ret = open_dir(s->what, "work directory", c->work_dir, &d->work_fd,
			       err, errlen);
		if (ret < 0) {
			dirs_close(d);
			return ret;
		}
		co->has_work_dir_fd = true;
		co->work_dir_fd = d->work_fd;
	}
	co->log_file = (char *)log;
	co->has_log_level = true;
	co->log_level = c->log_level ? c->log_level : 4;
	s->notify = c->notify;
	s->opaque = c->notify_opaque;
	if (c->notify != NULL) {
		co->has_notify_scripts = true;
		co->notify_scripts = true;
	}
	return 0;
}

/* The protobuf lists built for one request; freed by lists_free(). */
struct lists {
	ExtMountMap *mnt;
	ExtMountMap **mntp;
	CriuVethPair *veth;
	CriuVethPair **vethp;
	InheritFd *ifd;
	InheritFd **ifdp;
	CgroupRoot *cgr;
	CgroupRoot **cgrp;
	CriuPageServerInfo ps;
};

static void lists_free(struct lists *l)
{
	free(l->mnt);
	free(l->mntp);
	free(l->veth);
	free(l->vethp);
	free(l->ifd);
	free(l->ifdp);
	free(l->cgr);
	free(l->cgrp);
	memset(l, 0, sizeof(*l));
}

static int check_list(struct crs *s, const char *name, const void *p, size_t n,
		      char *err, size_t errlen)
{
	if (n > AGENT_CRIU_MAX_LIST) {
		ha_errf(err, errlen, 0, "criu %s: %zu %s entries, at most %u", s->what, n,
			name, AGENT_CRIU_MAX_LIST);
		return -E2BIG;
	}
	if (n > 0 && p == NULL) {
		ha_errf(err, errlen, 0, "criu %s: %zu %s entries but no list", s->what, n,
			name);
		return -EINVAL;
	}
	return 0;
}

static int set_kv(struct crs *s, const char *name, const struct agent_criu_kv *kv,
		  size_t n, bool veth, struct lists *l, CriuOpts *co, char *err,
		  size_t errlen)
{
	int ret = check_list(s, name, kv, n, err, errlen);

	if (ret < 0 || n == 0) {
		return ret;
	}
	for (size_t i = 0; i < n; i++) {
		if (kv[i].key == NULL || kv[i].val == NULL) {
			ha_errf(err, errlen, 0, "criu %s: %s entry %zu has no key or value",
				s->what, name, i);
			return -EINVAL;
		}
	}
	if (veth) {
		l->veth = calloc(n, sizeof(*l->veth));
		l->vethp = calloc(n, sizeof(*l->vethp));
		if (l->veth == NULL || l->vethp == NULL) {
			goto nomem;
		}
		for (size_t i = 0; i < n; i++) {
			criu_veth_pair__init(&l->veth[i]);
			l->veth[i].if_in = (char *)kv[i].key;
			l->veth[i].if_out = (char *)kv[i].val;
			l->vethp[i] = &l->veth[i];
		}
		co->n_veths = n;
		co->veths = l->vethp;
	} else {
		l->mnt = calloc(n, sizeof(*l->mnt));
		l->mntp = calloc(n, sizeof(*l->mntp));
		if (l->mnt == NULL || l->mntp == NULL) {
			goto nomem;
		}
		for (size_t i = 0; i < n; i++) {
			ext_mount_map__init(&l->mnt[i]);
			l->mnt[i].key = (char *)kv[i].key;
			l->mnt[i].val = (char *)kv[i].val;
			l->mntp[i] = &l->mnt[i];
		}
		co->n_ext_mnt = n;
		co->ext_mnt = l->mntp;
	}
	return 0;
nomem:
	ha_errf(err, errlen, 0, "criu %s: out of memory", s->what);
	return -ENOMEM;
}

static int set_external(struct crs *s, const char *const *ext, size_t n,
			CriuOpts *co, char *err, size_t errlen)
{
	int ret = check_list(s, "external", ext, n, err, errlen);

	if (ret < 0) {
		return ret;
	}
	for (size_t i = 0; i < n; i++) {
		if (ext[i] == NULL) {
			ha_errf(err, errlen, 0, "criu %s: external entry %zu is NULL", s->what, i);
			return -EINVAL;
		}
	}
	co->n_external = n;
	co->external = (char **)ext;
	return 0;
}

static int set_cg_mode(struct crs *s, enum agent_criu_cg_mode m, CriuOpts *co,
		       char *err, size_t errlen)
{
	static const CriuCgMode map[AGENT_CRIU_CG_MAX] = {
		[AGENT_CRIU_CG_IGNORE] = CRIU_CG_MODE__IGNORE,
		[AGENT_CRIU_CG_NONE] = CRIU_CG_MODE__CG_NONE,
		[AGENT_CRIU_CG_PROPS] = CRIU_CG_MODE__PROPS,
		[AGENT_CRIU_CG_SOFT] = CRIU_CG_MODE__SOFT,
		[AGENT_CRIU_CG_FULL] = CRIU_CG_MODE__FULL,
		[AGENT_CRIU_CG_STRICT] = CRIU_CG_MODE__STRICT,
	};

	if ((unsigned)m >= AGENT_CRIU_CG_MAX) {
		ha_errf(err, errlen, 0, "criu %s: invalid manage_cgroups mode %d", s->what,
			(int)m);
		return -EINVAL;
	}
	if (m != AGENT_CRIU_CG_UNSET) {
		co->has_manage_cgroups_mode = true;
		co->manage_cgroups_mode = map[m];
	}
	return 0;
}

static int set_netlock(struct crs *s, enum agent_criu_netlock m, CriuOpts *co,
		       char *err, size_t errlen)
{
	static const CriuNetworkLockMethod map[AGENT_CRIU_NETLOCK_MAX] = {
		[AGENT_CRIU_NETLOCK_IPTABLES] = CRIU_NETWORK_LOCK_METHOD__IPTABLES,
		[AGENT_CRIU_NETLOCK_NFTABLES] = CRIU_NETWORK_LOCK_METHOD__NFTABLES,
		[AGENT_CRIU_NETLOCK_SKIP] = CRIU_NETWORK_LOCK_METHOD__SKIP,
	};

	if ((unsigned)m >= AGENT_CRIU_NETLOCK_MAX) {
		ha_errf(err, errlen, 0, "criu %s: invalid network lock method %d", s->what,
			(int)m);
		return -EINVAL;
	}
	if (m != AGENT_CRIU_NETLOCK_UNSET) {
		co->has_network_lock = true;
		co->network_lock = map[m];
	}
	return 0;
}

#define SET_BOOL(co, field, v)                                                 \
	do {                                                                   \
		if (v) {                                                       \
			(co)->has_##field = true;                              \
			(co)->field = true;                                    \
		}                                                              \
	} while (0)

/*
 * What dump and restore take alike from their options. The two option
 * structs name these fields alike, so one macro serves both and a new
 * shared option is added once. Sets @ret to 0 or the first error.
 */
#define SET_DUMP_RESTORE(s, o, l, co, err, errlen, ret)                        \
	do {                                                                   \
		SET_BOOL(co, leave_stopped, (o)->leave_stopped);               \
		SET_BOOL(co, tcp_established, (o)->tcp_established);           \
		SET_BOOL(co, tcp_close, (o)->tcp_close);                       \
		SET_BOOL(co, ext_unix_sk, (o)->ext_unix_sk);                   \
		SET_BOOL(co, shell_job, (o)->shell_job);                       \
		SET_BOOL(co, file_locks, (o)->file_locks);                     \
		SET_BOOL(co, link_remap, (o)->link_remap);                     \
		SET_BOOL(co, evasive_devices, (o)->evasive_devices);           \
		SET_BOOL(co, auto_dedup, (o)->auto_dedup);                     \
		SET_BOOL(co, lazy_pages, (o)->lazy_pages);                     \
		if ((o)->orphan_pts_master) {                                  \
			(co)->has_orphan_pts_master = true;                    \
			(co)->orphan_pts_master = true;                        \
			(co)->has_notify_scripts = true;                       \
			(co)->notify_scripts = true;                           \
		}                                                              \
		(co)->root = (char *)(o)->root;                                \
		if (((ret) = set_cg_mode(s, (o)->manage_cgroups, co, err,      \
					 errlen)) == 0 &&                      \
		    ((ret) = set_netlock(s, (o)->network_lock, co, err,        \
					 errlen)) == 0 &&                      \
		    ((ret) = set_kv(s, "ext_mnt", (o)->ext_mnt, (o)->n_ext_mnt,\
				    false, l, co, err, errlen)) == 0 &&        \
		    ((ret) = set_kv(s, "veth_pairs", (o)->veth_pairs,          \
				    (o)->n_veth_pairs, true, l, co, err,       \
				    errlen)) == 0) {                           \
			(ret) = set_external(s, (o)->external, (o)->n_external,\
					     co, err, errlen);                 \
		}                                                              \
	} while (0)

int agent_criu_dump(const char *criu_path, const struct agent_criu_dump_opts *o,
		    char *err, size_t errlen)
{
	CriuReq req = CRIU_REQ__INIT;
	CriuOpts co = CRIU_OPTS__INIT;
	struct agent_criu_resp r;
	struct lists l = { 0 };
	struct dirs d = { -1, -1 };
	struct crs s;
	int keep[1], nkeep = 0;
	int ret;

	if (o == NULL) {
		ha_errf(err, errlen, 0, "criu dump: no options given");
		return -EINVAL;
	}
	crs_init(&s, criu_path, o->c.timeout_ms);
	snprintf(s.what, sizeof(s.what), "%s of pid %d",
		 o->pre_dump ? "pre-dump" : "dump", (int)o->pid);
	if (o->pid <= 0) {
		ha_errf(err, errlen, 0, "criu dump: invalid pid %d", (int)o->pid);
		return -EINVAL;
	}
	if (o->ghost_limit > UINT32_MAX) {
		ha_errf(err, errlen, 0, "criu %s: ghost limit %" PRIu64 " above 4 GiB",
			s.what, o->ghost_limit);
		return -EINVAL;
	}
	if (o->empty_ns & ~(uint32_t)CLONE_NEWNET) {
		ha_errf(err, errlen, 0, "criu %s: empty_ns %#x: CRIU only accepts CLONE_NEWNET",
			s.what, o->empty_ns);
		return -EINVAL;
	}
	ret = common_setup(&s, &o->c, o->pre_dump ? "pre-dump.log" : "dump.log",
			   &co, &d, err, errlen);
	if (ret < 0) {
		return ret;
	}
	co.has_pid = true;
	co.pid = o->pid;
	SET_BOOL(&co, leave_running, o->leave_running);
	SET_BOOL(&co, track_mem, o->track_mem);
	co.parent_img = (char *)o->parent_img;
	SET_BOOL(&co, tcp_skip_in_flight, o->tcp_skip_in_flight);
	co.freeze_cgroup = (char *)o->freeze_cgroup;
	if (o->ghost_limit) {
		co.has_ghost_limit = true;
		co.ghost_limit = (uint32_t)o->ghost_limit;
	}
	if (o->empty_ns) {
		co.has_empty_ns = true;
		co.empty_ns = o->empty_ns;
	}
	SET_DUMP_RESTORE(&s, o, &l, &co, err, errlen, ret);
	if (ret < 0) {
		goto out;
	}
	if (o->ps_port != 0 || o->ps_fd > 0 || o->lazy_pages) {
		criu_page_server_info__init(&l.ps);
		l.ps.address = (char *)o->ps_address;
		if (o->ps_port != 0) {
			l.ps.has_port = true;
			l.ps.port = o->ps_port;
		}
		if (o->ps_fd > 0) {
			l.ps.has_fd = true;
			l.ps.fd = o->ps_fd;
			keep[nkeep++] = o->ps_fd;
		}
		co.ps = &l.ps;
	}
	req.type = o->pre_dump ? CRIU_REQ_TYPE__PRE_DUMP : CRIU_REQ_TYPE__DUMP;
	req.opts = &co;

	ret = crs_open(&s, keep, (size_t)nkeep, err, errlen);
	if (ret < 0) {
		goto out;
	}
	ret = crs_call(&s, &req, (int)req.type, &r, err, errlen);
	if (ret == 0 && !r.success) {
		ret = crs_failed(&s, &r, err, errlen);
	}
	crs_close(&s, false, NULL);
out:
	lists_free(&l);
	dirs_close(&d);
	return ret;
}

int agent_criu_restore(const char *criu_path,
		       const struct agent_criu_restore_opts *o, pid_t *pid_out,
		       char *err, size_t errlen)
{
	CriuReq req = CRIU_REQ__INIT;
	CriuOpts co = CRIU_OPTS__INIT;
	struct agent_criu_resp r;
	struct lists l = { 0 };
	struct dirs d = { -1, -1 };
	struct crs s;
	int keep[AGENT_CRIU_MAX_LIST];
	int ret;

	if (pid_out != NULL) {
		*pid_out = 0;
	}
	if (o == NULL) {
		ha_errf(err, errlen, 0, "criu restore: no options given");
		return -EINVAL;
	}
	crs_init(&s, criu_path, o->c.timeout_ms);
	snprintf(s.what, sizeof(s.what), "restore from %.70s",
		 o->c.images_dir ? o->c.images_dir : "(none)");
	if (o->restore_detached && o->restore_sibling) {
		ha_errf(err, errlen, 0, "criu %s: restore_detached and restore_sibling exclude each other",
			s.what);
		return -EINVAL;
	}
	ret = common_setup(&s, &o->c, "restore.log", &co, &d, err, errlen);
	if (ret < 0) {
		return ret;
	}
	/* The RPC service restores detached anyway; rst_sibling makes the
	 * tree our child instead of CRIU's. */
	SET_BOOL(&co, rst_sibling, o->restore_sibling);
	SET_DUMP_RESTORE(&s, o, &l, &co, err, errlen, ret);
	if (ret < 0 ||
	    (ret = check_list(&s, "cg_root", o->cg_root, o->n_cg_root, err,
			      errlen)) < 0 ||
	    (ret = check_list(&s, "inherit_fd", o->inherit_fd, o->n_inherit_fd, err,
			      errlen)) < 0) {
		goto out;
	}
	if (o->n_cg_root > 0) {
		l.cgr = calloc(o->n_cg_root, sizeof(*l.cgr));
		l.cgrp = calloc(o->n_cg_root, sizeof(*l.cgrp));
		if (l.cgr == NULL || l.cgrp == NULL) {
			ret = -ENOMEM;
			ha_errf(err, errlen, 0, "criu %s: out of memory", s.what);
			goto out;
		}
		for (size_t i = 0; i < o->n_cg_root; i++) {
			if (o->cg_root[i].path == NULL) {
				ret = -EINVAL;
				ha_errf(err, errlen, 0, "criu %s: cg_root entry %zu has no path",
					s.what, i);
				goto out;
			}
			cgroup_root__init(&l.cgr[i]);
			l.cgr[i].ctrl = (char *)o->cg_root[i].ctrl;
			l.cgr[i].path = (char *)o->cg_root[i].path;
			l.cgrp[i] = &l.cgr[i];
		}
		co.n_cg_root = o->n_cg_root;
		co.cg_root = l.cgrp;
	}
	if (o->n_inherit_fd > 0) {
		l.ifd = calloc(o->n_inherit_fd, sizeof(*l.ifd));
		l.ifdp = calloc(o->n_inherit_fd, sizeof(*l.ifdp));
		if (l.ifd == NULL || l.ifdp == NULL) {
			ret = -ENOMEM;
			ha_errf(err, errlen, 0, "criu %s: out of memory", s.what);
			goto out;
		}
		for (size_t i = 0; i < o->n_inherit_fd; i++) {
			const struct agent_criu_inherit_fd *f = &o->inherit_fd[i];

			if (f->key == NULL || f->fd < 0 || fcntl(f->fd, F_GETFD) < 0) {
				ret = -EBADF;
				ha_errf(err, errlen, 0, "criu %s: inherit_fd entry %zu (%s): fd %d not open",
					s.what, i, f->key ? f->key : "no key", f->fd);
				goto out;
			}
			inherit_fd__init(&l.ifd[i]);
			l.ifd[i].key = (char *)f->key;
			l.ifd[i].fd = f->fd;
			l.ifdp[i] = &l.ifd[i];
			keep[i] = f->fd;
		}
		co.n_inherit_fd = o->n_inherit_fd;
		co.inherit_fd = l.ifdp;
	}
	req.type = CRIU_REQ_TYPE__RESTORE;
	req.opts = &co;

	ret = crs_open(&s, keep, o->n_inherit_fd, err, errlen);
	if (ret < 0) {
		goto out;
	}
	ret = crs_call(&s, &req, CRIU_REQ_TYPE__RESTORE, &r, err, errlen);
	if (ret == 0 && !r.success) {
		ret = crs_failed(&s, &r, err, errlen);
	} else if (ret == 0 && r.restore_pid <= 0) {
		ha_errf(err, errlen, 0, "criu %s: success without the pid of the tree; log %s",
			s.what, s.log_path);
		ret = -EPROTO;
	} else if (ret == 0 && pid_out != NULL) {
		*pid_out = r.restore_pid;
	}
	crs_close(&s, false, NULL);
out:
	lists_free(&l);
	dirs_close(&d);
	return ret;
}

int agent_criu_check_features(const char *criu_path, bool *mem_track,
			      bool *lazy_pages, char *err, size_t errlen)
{
	CriuReq req = CRIU_REQ__INIT;
	CriuFeatures f = CRIU_FEATURES__INIT;
	struct agent_criu_resp r;
	struct crs s;
	int ret;

	crs_init(&s, criu_path, AGENT_CRIU_PROBE_TIMEOUT_MS);
	snprintf(s.what, sizeof(s.what), "feature check");
	f.has_mem_track = f.mem_track = true;
	f.has_lazy_pages = f.lazy_pages = true;
	req.type = CRIU_REQ_TYPE__FEATURE_CHECK;
	req.features = &f;
	ret = crs_open(&s, NULL, 0, err, errlen);
	if (ret < 0) {
		return ret;
	}
	ret = crs_call(&s, &req, CRIU_REQ_TYPE__FEATURE_CHECK, &r, err, errlen);
	if (ret == 0 && (!r.success || !r.has_features)) {
		ha_errf(err, errlen, 0, "criu %s failed (%s)", s.what,
			r.errmsg[0] ? r.errmsg : "no features in the answer");
		ret = -EIO;
	}
	crs_close(&s, false, NULL);
	if (ret == 0) {
		if (mem_track != NULL) {
			*mem_track = r.feat_mem_track;
		}
		if (lazy_pages != NULL) {
			*lazy_pages = r.feat_lazy_pages;
		}
	}
	return ret;
}

static int criu_version(const char *criu_path, char *out, size_t n, char *err,
			size_t errlen)
{
	CriuReq req = CRIU_REQ__INIT;
	struct agent_criu_resp r;
	struct crs s;
	int ret;

	crs_init(&s, criu_path, AGENT_CRIU_PROBE_TIMEOUT_MS);
	snprintf(s.what, sizeof(s.what), "version");
	req.type = CRIU_REQ_TYPE__VERSION;
	ret = crs_open(&s, NULL, 0, err, errlen);
	if (ret < 0) {
		return ret;
	}
	ret = crs_call(&s, &req, CRIU_REQ_TYPE__VERSION, &r, err, errlen);
	if (ret == 0 && (!r.success || !r.has_version)) {
		ha_errf(err, errlen, 0, "criu %s: %s answered no version", s.what, s.criu);
		ret = -EPROTO;
	}
	crs_close(&s, false, NULL);
	if (ret == 0) {
		if (r.version_sublevel > 0) {
			snprintf(out, n, "%d.%d.%d", r.version_major, r.version_minor,
				 r.version_sublevel);
		} else {
			snprintf(out, n, "%d.%d", r.version_major, r.version_minor);
		}
	}
	return ret;
}

/* ---- the probe's trial dump ------------------------------------------- */

/* Removes the flat directory CRIU wrote (images and log, no subdirs). */
static void remove_flat_dir(const char *path)
{
	DIR *dir = opendir(path);
	struct dirent *de;

	if (dir != NULL) {
		while ((de = readdir(dir)) != NULL) {
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
				unlinkat(dirfd(dir), de->d_name, 0);
			}
		}
		closedir(dir);
	}
	rmdir(path);
}

/*
 * Starts a throw-away `sleep` in its own session holding a listening
 * socket and both ends of an established connection on 127.0.0.1.
 */
static int start_tcp_holder(pid_t *pid, int *pidfd, char *err, size_t errlen)
{
	static const char *const sleeps[] = { "/usr/bin/sleep", "/bin/sleep" };
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	int fds[3] = { -1, -1, -1 };
	const char *sleep_path = NULL;
	int ret;

	for (size_t i = 0; i < HA_ARRAY_SIZE(sleeps); i++) {
		if (access(sleeps[i], X_OK) == 0) {
			sleep_path = sleeps[i];
			break;
		}
	}
	if (sleep_path == NULL) {
		ha_errf(err, errlen, 0, "criu probe: no sleep binary for the trial dump");
		return -ENOENT;
	}
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	fds[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fds[0] < 0 || fds[1] < 0 ||
	    bind(fds[0], (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(fds[0], 4) < 0 ||
	    getsockname(fds[0], (struct sockaddr *)&a, &alen) < 0 ||
	    connect(fds[1], (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    (fds[2] = accept4(fds[0], NULL, NULL, SOCK_CLOEXEC)) < 0) {
		ret = -errno;
		ha_errf(err, errlen, 0, "criu probe: loopback TCP sockets: %s",
			strerror(-ret));
		goto out;
	}
	{
		char *argv[] = { (char *)sleep_path, "600", NULL };

		ret = crs_spawn(sleep_path, argv, fds, 3, SPAWN_SETSID | SPAWN_NULL_STDERR,
			    pid, pidfd, err, errlen);
	}
out:
	for (size_t i = 0; i < HA_ARRAY_SIZE(fds); i++) {
		if (fds[i] >= 0) {
			close(fds[i]);
		}
	}
	return ret;
}

static bool trial_inet_dump(const char *criu_path, char *err, size_t errlen)
{
	char dir[] = "/tmp/hactl-criu-probe.XXXXXX";
	char e2[512] = "";
	pid_t pid = -1;
	int pidfd = -1, status, ret;
	struct agent_criu_dump_opts o = {
		.c.timeout_ms = AGENT_CRIU_PROBE_TIMEOUT_MS,
		.c.log_file = "probe-dump.log",
		.leave_running = true,
		.tcp_established = true,
		/* No iptables needed: CRIU locks with its libnftables. */
		.network_lock = AGENT_CRIU_NETLOCK_NFTABLES,
	};

	if (geteuid() != 0) {
		qb_log(LOG_DEBUG, "criu probe: not root, no trial dump");
		return false;
	}
	if (mkdtemp(dir) == NULL) {
		qb_log(LOG_DEBUG, "criu probe: mkdtemp %s: %s", dir, strerror(errno));
		return false;
	}
	ret = start_tcp_holder(&pid, &pidfd, e2, sizeof(e2));
	if (ret == 0) {
		o.c.images_dir = dir;
		o.pid = pid;
		ret = agent_criu_dump(criu_path, &o, e2, sizeof(e2));
		/* Our own throw-away child, not CRIU. */
		kill(pid, SIGKILL);
		crs_reap_within(pid, pidfd, 10 * 1000, &status);
		if (pidfd >= 0) {
			close(pidfd);
		}
	}
	if (ret < 0) {
		qb_log(LOG_DEBUG, "criu probe: trial dump failed: %s", e2);
		ha_errf(err, errlen, 0, "%s", e2);
	}
	remove_flat_dir(dir);
	return ret == 0;
}

/* Lazy pages need pipes of 4 MiB (fs.pipe-max-size). */
#define LAZY_PIPE_MIN (4u * 1024u * 1024u)

static bool pipe_max_ok(void)
{
	char buf[32];
	uint64_t v = 0;
	ssize_t n;
	int fd = open("/proc/sys/fs/pipe-max-size", O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		return false;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0) {
		return false;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return ha_parse_u64(buf, 0, UINT64_MAX, &v) == 0 && v >= LAZY_PIPE_MIN;
}

int agent_criu_probe(const char *criu_path, struct agent_criu_caps *out,
		     char *err, size_t errlen)
{
	char e2[512];
	bool mt = false, lp = false;
	int ret;

	memset(out, 0, sizeof(*out));
	ha_errf(err, errlen, 0, "%s", "");
	ret = criu_version(criu_path, out->version, sizeof(out->version), err,
			   errlen);
	if (ret < 0) {
		out->version[0] = '\0';
		return ret;
	}
	out->present = true;
	ret = agent_criu_check_features(criu_path, &mt, &lp, e2, sizeof(e2));
	if (ret < 0) {
		qb_log(LOG_DEBUG, "criu probe: %s", e2);
	}
	out->mem_dirty_track = mt;
	out->lazy_pages = lp && pipe_max_ok();
	if (lp && !out->lazy_pages) {
		qb_log(LOG_DEBUG, "criu probe: lazy pages need fs.pipe-max-size >= %u",
		       LAZY_PIPE_MIN);
	}
	out->inet_dump_ok = trial_inet_dump(criu_path, e2, sizeof(e2));
	qb_log(LOG_DEBUG, "criu probe: %s version %s mem_dirty_track %d lazy_pages %d inet_dump_ok %d",
	       criu_path ? criu_path : AGENT_CRIU_DEFAULT_PATH, out->version,
	       out->mem_dirty_track, out->lazy_pages, out->inet_dump_ok);
	return 0;
}

/* ---- page server and lazy-pages daemon ---------------------------------- */

int agent_criu_page_server(const char *criu_path,
			   const struct agent_criu_ps_opts *o, pid_t *pid_out,
			   uint16_t *port_out, char *err, size_t errlen)
{
	CriuReq req = CRIU_REQ__INIT;
	CriuOpts co = CRIU_OPTS__INIT;
	CriuPageServerInfo ps = CRIU_PAGE_SERVER_INFO__INIT;
	struct agent_criu_resp r;
	struct dirs d = { -1, -1 };
	struct crs s;
	int keep[1], nkeep = 0;
	int ret;

	if (pid_out != NULL) {
		*pid_out = 0;
	}
	if (port_out != NULL) {
		*port_out = 0;
	}
	if (o == NULL) {
		ha_errf(err, errlen, 0, "criu page server: no options given");
		return -EINVAL;
	}
	crs_init(&s, criu_path, o->c.timeout_ms);
	snprintf(s.what, sizeof(s.what), "page server on %.40s:%u",
		 o->address ? o->address : "*", o->port);
	ret = common_setup(&s, &o->c, "page-server.log", &co, &d, err, errlen);
	if (ret < 0) {
		return ret;
	}
	ps.address = (char *)o->address;
	ps.has_port = true;
	ps.port = o->port;
	if (o->fd > 0) {
		ps.has_fd = true;
		ps.fd = o->fd;
		keep[nkeep++] = o->fd;
	}
	co.ps = &ps;
	/* No notifications: the server would send them on this session's
	 * socket after the answer, when nobody listens any more. */
	co.has_notify_scripts = false;
	co.notify_scripts = false;
	s.notify = NULL;
	/* PAGE_SERVER_CHLD: a child of the swrk process serves and answers
	 * its real pid (PAGE_SERVER's daemon mode answers pid 0). */
	req.type = CRIU_REQ_TYPE__PAGE_SERVER_CHLD;
	req.opts = &co;
	ret = crs_open(&s, keep, (size_t)nkeep, err, errlen);
	if (ret < 0) {
		goto out;
	}
	ret = crs_call(&s, &req, CRIU_REQ_TYPE__PAGE_SERVER, &r, err, errlen);
	if (ret == 0 && !r.success) {
		ret = crs_failed(&s, &r, err, errlen);
	} else if (ret == 0 && (r.ps_pid <= 0 || r.ps_port <= 0)) {
		ha_errf(err, errlen, 0, "criu %s: no pid or port in the answer; log %s",
			s.what, s.log_path);
		ret = -EPROTO;
	}
	crs_close(&s, false, NULL);
	if (ret == 0) {
		if (pid_out != NULL) {
			*pid_out = r.ps_pid;
		}
		if (port_out != NULL) {
			*port_out = (uint16_t)r.ps_port;
		}
	}
out:
	dirs_close(&d);
	return ret;
}

int agent_criu_lazy_pages(const char *criu_path,
			  const struct agent_criu_lazy_opts *o, pid_t *pid_out,
			  char *err, size_t errlen)
{
	const char *criu = criu_path != NULL ? criu_path : AGENT_CRIU_DEFAULT_PATH;
	const char *log;
	char port[8], verb[8], status_fd[16];
	char log_path[PATH_MAX];
	uint64_t deadline;
	int sp[2], pidfd = -1, ret, st;
	pid_t pid = -1;
	char c;

	if (pid_out != NULL) {
		*pid_out = 0;
	}
	if (o == NULL || o->c.images_dir == NULL || o->address == NULL ||
	    o->port == 0) {
		ha_errf(err, errlen, 0, "criu lazy-pages: images_dir, address and port are required");
		return -EINVAL;
	}
	log = o->c.log_file != NULL ? o->c.log_file : "lazy-pages.log";
	if (strchr(log, '/') != NULL || o->c.log_level < 0 || o->c.log_level > 4) {
		ha_errf(err, errlen, 0, "criu lazy-pages: log file '%s' or level %d invalid",
			log, o->c.log_level);
		return -EINVAL;
	}
	snprintf(log_path, sizeof(log_path), "%s/%s",
		 o->c.work_dir ? o->c.work_dir : o->c.images_dir, log);
	if (access(criu, X_OK) < 0) {
		ret = -errno;
		ha_errf(err, errlen, 0, "criu binary %s: %s (deploy/install-criu installs it in %s)",
			criu, strerror(-ret), AGENT_CRIU_DEFAULT_PATH);
		return ret;
	}
	if (pipe2(sp, O_CLOEXEC) < 0) {
		ret = -errno;
		ha_errf(err, errlen, 0, "criu lazy-pages: pipe: %s", strerror(-ret));
		return ret;
	}
	snprintf(port, sizeof(port), "%u", o->port);
	snprintf(verb, sizeof(verb), "-v%d", o->c.log_level ? o->c.log_level : 4);
	snprintf(status_fd, sizeof(status_fd), "%d", sp[1]);
	{
		char *argv[] = { (char *)criu, "lazy-pages", "--page-server",
				 "--address", (char *)o->address, "--port", port,
				 "-D", (char *)o->c.images_dir,
				 "-W", (char *)(o->c.work_dir ? o->c.work_dir
							      : o->c.images_dir),
				 "-o", (char *)log, verb, "--status-fd", status_fd,
				 NULL };

		ret = crs_spawn(criu, argv, &sp[1], 1, 0, &pid, &pidfd, err, errlen);
	}
	close(sp[1]);
	if (ret < 0) {
		close(sp[0]);
		return ret;
	}
	/* One byte on the status fd: it listens for the restore. */
	deadline = ha_mono_ms() + (o->c.timeout_ms ? o->c.timeout_ms
						   : AGENT_CRIU_PROBE_TIMEOUT_MS);
	for (;;) {
		struct pollfd p = { .fd = sp[0], .events = POLLIN };
		uint64_t now = ha_mono_ms();
		ssize_t n;

		if (now >= deadline) {
			ret = -ETIMEDOUT;
			break;
		}
		if (poll(&p, 1, (int)(deadline - now > INT_MAX ? INT_MAX
							  : deadline - now)) <= 0) {
			continue;
		}
		n = read(sp[0], &c, 1);
		if (n == 1) {
			ret = 0;
			break;
		}
		if (n == 0) {
			ret = -EIO;
			break;
		}
		if (errno != EINTR) {
			ret = -errno;
			break;
		}
	}
	close(sp[0]);
	if (ret < 0) {
		char first[256], how[64] = "did not get ready in time";

		/* A lazy-pages daemon holds no tasks: SIGTERM is safe. */
		if (ret == -ETIMEDOUT) {
			kill(pid, SIGTERM);
		}
		if (crs_reap_within(pid, pidfd, AGENT_CRIU_TERM_GRACE_MS, &st) == 0 &&
		    ret != -ETIMEDOUT && st != -1) {
			crs_describe_status(how, sizeof(how), st);
		}
		crs_log_first_error(log_path, NULL, first, sizeof(first));
		ha_errf(err, errlen, 0, "criu lazy-pages for %s:%u %s%s%s; log %s",
			o->address, o->port, how, first[0] ? ": " : "", first,
			log_path);
		if (pidfd >= 0) {
			close(pidfd);
		}
		return ret;
	}
	if (pidfd >= 0) {
		close(pidfd);
	}
	if (pid_out != NULL) {
		*pid_out = pid;
	}
	return 0;
}

int agent_criu_child_wait(pid_t pid, uint32_t timeout_ms, char *err,
			  size_t errlen)
{
	uint64_t ms = timeout_ms ? timeout_ms : AGENT_CRIU_DEFAULT_TIMEOUT_MS;
	int pidfd, status = 0, ret;
	pid_t r;
	char how[64];

	if (pid <= 0) {
		ha_errf(err, errlen, 0, "criu helper: invalid pid %d", (int)pid);
		return -EINVAL;
	}
	r = waitpid(pid, &status, WNOHANG);
	if (r == pid) {
		goto check;
	}
	pidfd = crs_pidfd_open(pid);
	if (r < 0 && errno == ECHILD) {
		/* Not our child (a page server CRIU daemonized): wait for its
		 * end; its exit status is not ours to see. */
		struct pollfd p = { .fd = pidfd, .events = POLLIN };

		if (pidfd < 0) {
			if (errno == ESRCH) {
				return 0;
			}
			ret = -errno;
			ha_errf(err, errlen, 0, "criu helper pid %d: cannot wait: pidfd_open: %s",
				(int)pid, strerror(-ret));
			return ret;
		}
		ret = poll(&p, 1, ms > INT_MAX ? INT_MAX : (int)ms);
		close(pidfd);
		if (ret == 0) {
			ha_errf(err, errlen, 0, "criu helper pid %d still runs after %" PRIu64 " ms",
				(int)pid, ms);
			return -ETIMEDOUT;
		}
		return 0;
	}
	ret = crs_reap_within(pid, pidfd, ms, &status);
	if (pidfd >= 0) {
		close(pidfd);
	}
	if (ret == -ETIMEDOUT) {
		ha_errf(err, errlen, 0, "criu helper pid %d still runs after %" PRIu64 " ms",
			(int)pid, ms);
		return ret;
	}
check:
	if (status == -1 || (WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		return 0;
	}
	crs_describe_status(how, sizeof(how), status);
	ha_errf(err, errlen, 0, "criu helper pid %d %s (see the log in its work directory)",
		(int)pid, how);
	return -EIO;
}

#endif /* HAVE_CRIU_RPC */
