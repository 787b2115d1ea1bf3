/*
 * agent_facts.c - host facts (CPUs, memory, KVM, CRIU, QEMU, RDMA) and
 * usage sampling.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_IBVERBS
#include <infiniband/verbs.h>
#endif

#include <qb/qblog.h>

#include "agent_facts.h"
#ifdef HAVE_CRIU_RPC
#include "criu_rpc.h"
#endif
#include "ha_spawn.h"
#include "util.h"

/*
 * Runs argv with stdout captured (at most outlen-1 bytes), stdin and stderr
 * on /dev/null, killing it after timeout_ms. Returns its exit status
 * (0..255), or -errno / -ETIMEDOUT.
 */
static int run_capture(char *const argv[], char *out, size_t outlen,
		       uint32_t timeout_ms)
{
	struct ha_spawn sp = { .argv = argv, .out = out, .out_len = outlen,
			       .timeout_ms = timeout_ms ? timeout_ms : 1 };
	struct ha_spawn_result r;
	int rc = ha_spawn_run(&sp, &r);

	if (rc < 0) {
		return rc;
	}
	return r.exit_code >= 0 ? r.exit_code : -ECHILD;
}

int agent_parse_criu_version(const char *text, char *out, size_t outlen)
{
	const char *p = strstr(text, "Version:");
	size_t n = 0;

	if (p == NULL) {
		return -EINVAL;
	}
	p += strlen("Version:");
	while (*p == ' ' || *p == '\t') {
		p++;
	}
	while ((p[n] >= '0' && p[n] <= '9') || p[n] == '.') {
		n++;
	}
	if (n == 0 || n >= outlen) {
		return -EINVAL;
	}
	memcpy(out, p, n);
	out[n] = 0;
	return 0;
}

static void probe_criu_cli(const struct agent_probe_opts *o, Hactl__HostFacts *f)
	__attribute__((unused));

/*
 * CRIU over its swrk RPC (agent/criu_rpc.c): version, the mem_track and
 * lazy_pages features and a trial dump of a process holding inet sockets.
 * A CRIU that cannot dump such a process is reported absent.
 */
static void probe_criu(const struct agent_probe_opts *o, Hactl__HostFacts *f)
{
#ifdef HAVE_CRIU_RPC
	struct agent_criu_caps caps;
	char err[512] = "";

	f->has_criu_present = true;
	if (agent_criu_probe(o->criu_path, &caps, err, sizeof(err)) < 0 || !caps.present) {
		qb_log(LOG_WARNING, "CRIU probe: %s", err[0] ? err : "not present");
		f->criu_present = false;
		return;
	}
	f->criu_present = caps.inet_dump_ok;
	if (!caps.inet_dump_ok) {
		qb_log(LOG_WARNING, "CRIU %s cannot dump inet sockets on this kernel: %s",
		       caps.version, err);
	}
	f->criu_version = strdup(caps.version);
	f->has_criu_mem_dirty_track = true;
	f->criu_mem_dirty_track = caps.mem_dirty_track;
	f->has_criu_lazy_pages = true;
	f->criu_lazy_pages = caps.lazy_pages;
#else
	probe_criu_cli(o, f);
#endif
}

static void probe_criu_cli(const struct agent_probe_opts *o, Hactl__HostFacts *f)
{
	char out[512], ver[32];
	char *vargv[] = { (char *)o->criu_path, "--version", NULL };
	char *dargv[] = { (char *)o->criu_path, "check", "--feature",
			  "mem_dirty_track", NULL };
	char *largv[] = { (char *)o->criu_path, "check", "--feature",
			  "lazy_pages", NULL };

	f->has_criu_present = true;
	if (run_capture(vargv, out, sizeof(out), o->timeout_ms) != 0 ||
	    agent_parse_criu_version(out, ver, sizeof(ver)) < 0) {
		f->criu_present = false;
		return;
	}
	f->criu_present = true;
	f->criu_version = strdup(ver);
	f->has_criu_mem_dirty_track = true;
	f->criu_mem_dirty_track = run_capture(dargv, out, sizeof(out), o->timeout_ms) == 0;
	f->has_criu_lazy_pages = true;
	f->criu_lazy_pages = run_capture(largv, out, sizeof(out), o->timeout_ms) == 0;
}

static void probe_qemu(const struct agent_probe_opts *o, Hactl__HostFacts *f)
{
	char out[512];
	char *argv[] = { (char *)o->qemu_path, "--version", NULL };
	const char *p;
	size_t n = 0;

	if (run_capture(argv, out, sizeof(out), o->timeout_ms) != 0) {
		return;
	}
	p = strstr(out, "version ");
	if (p == NULL) {
		return;
	}
	p += strlen("version ");
	while (p[n] && p[n] != ' ' && p[n] != '\n' && n < 31) {
		n++;
	}
	f->qemu_version = strndup(p, n);
}

/*
 * KVM trial in a child (a broken KVM may hang KVM_RUN): a real-mode guest
 * writes 42 to port 0x10 and halts. Exit 0 means the vCPU ran our code.
 */
/* In a forked child (ha_spawn_run's fn): exit 0 when a vCPU ran. */
static int kvm_trial_child(void *arg)
{
	static const uint8_t code[] = {
		0xb0, 42,   /* mov al, 42 */
		0xe6, 0x10, /* out 0x10, al */
		0xf4,       /* hlt */
	};
	int kvm = *(const int *)arg;
	struct kvm_userspace_memory_region region = { 0 };
	struct kvm_sregs sregs;
	struct kvm_regs regs = { 0 };
	struct kvm_run *run;
	uint8_t *mem;
	int vm, vcpu, size, io_seen = 0;

	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) {
		return 10;
	}
	mem = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		   -1, 0);
	if (mem == MAP_FAILED) {
		return 11;
	}
	memcpy(mem, code, sizeof(code));
	region.guest_phys_addr = 0x1000;
	region.memory_size = 0x1000;
	region.userspace_addr = (uint64_t)(uintptr_t)mem;
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
		return 12;
	}
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vcpu < 0 || size <= 0) {
		return 13;
	}
	run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED || ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) {
		return 14;
	}
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) {
		return 15;
	}
	regs.rip = 0x1000;
	regs.rflags = 0x2;
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) {
		return 16;
	}
	for (int i = 0; i < 8; i++) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			return 17;
		}
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0x10 &&
		    run->io.direction == KVM_EXIT_IO_OUT &&
		    ((uint8_t *)run)[run->io.data_offset] == 42) {
			io_seen = 1;
			continue;
		}
		if (run->exit_reason == KVM_EXIT_HLT) {
			return io_seen ? 0 : 18;
		}
		return 19;
	}
	return 20;
}

static void probe_kvm(const struct agent_probe_opts *o, Hactl__HostFacts *f)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	struct ha_spawn_result r;
	int rc;

	f->has_kvm_present = true;
	f->has_kvm_usable = true;
	if (kvm < 0) {
		return;
	}
	if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		close(kvm);
		return;
	}
	f->kvm_present = true;
	{
		struct ha_spawn sp = { .fn = kvm_trial_child, .arg = &kvm,
				       .err = HA_SPAWN_ERR_INHERIT,
				       .timeout_ms = o->timeout_ms ? o->timeout_ms : 1 };

		rc = ha_spawn_run(&sp, &r);
	}
	close(kvm);
	f->kvm_usable = rc == 0 && r.exit_code == 0;
}

static void probe_rdma(Hactl__HostFacts *f)
{
#ifdef HAVE_IBVERBS
	int n = 0;
	struct ibv_device **list = ibv_get_device_list(&n);

	if (list == NULL) {
		return;
	}
	if (n > 0) {
		f->rdma_devices = calloc((size_t)n, sizeof(char *));
		for (int i = 0; f->rdma_devices && i < n; i++) {
			f->rdma_devices[f->n_rdma_devices++] =
				strdup(ibv_get_device_name(list[i]));
		}
	}
	ibv_free_device_list(list);
#else
	(void)f;
#endif
}

void agent_facts_probe(const struct agent_probe_opts *o, Hactl__HostFacts *f)
{
	struct sysinfo si;
	struct utsname u;
	char host[256];

	f->has_cpus = true;
	f->cpus = (uint32_t)sysconf(_SC_NPROCESSORS_ONLN);
	if (sysinfo(&si) == 0) {
		f->has_mem_total_kib = true;
		f->mem_total_kib = (uint64_t)si.totalram * si.mem_unit / 1024;
	}
	if (uname(&u) == 0) {
		f->kernel = strdup(u.release);
	}
	if (gethostname(host, sizeof(host)) == 0) {
		host[sizeof(host) - 1] = 0;
		f->hostname = strdup(host);
	}
	f->agent_version = strdup(HA_VERSION);
	probe_kvm(o, f);
	probe_criu(o, f);
	probe_qemu(o, f);
	probe_rdma(f);
}

void agent_facts_clear(Hactl__HostFacts *f)
{
	free(f->criu_version);
	free(f->kernel);
	free(f->agent_version);
	free(f->qemu_version);
	free(f->hostname);
	free(f->migration_address);
	for (size_t i = 0; i < f->n_rdma_devices; i++) {
		free(f->rdma_devices[i]);
	}
	free(f->rdma_devices);
	hactl__host_facts__init(f);
}

int agent_parse_proc_stat(const char *text, struct agent_cpu_sample *out)
{
	unsigned long long v[10] = { 0 };
	int n = sscanf(text, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
		       &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
		       &v[8], &v[9]);

	if (n < 4) {
		return -EINVAL;
	}
	out->total = 0;
	for (int i = 0; i < 8 && i < n; i++) { /* guest time is in user already */
		out->total += v[i];
	}
	/* idle + iowait are not busy */
	out->busy = out->total - v[3] - (n > 4 ? v[4] : 0);
	return 0;
}

static uint64_t meminfo_kib(const char *text, const char *key)
{
	const char *p = strstr(text, key);

	return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

int agent_usage_sample(struct agent_cpu_sample *prev, Hactl__HostUsage *u)
{
	_cleanup_free_ uint8_t *stat = NULL;
	_cleanup_free_ uint8_t *mem = NULL;
	struct agent_cpu_sample now;
	size_t len;
	double load[1];
	int rc;

	rc = ha_file_read("/proc/stat", 1 << 20, &stat, &len);
	if (rc < 0) {
		return rc;
	}
	rc = agent_parse_proc_stat((const char *)stat, &now);
	if (rc < 0) {
		return rc;
	}
	u->has_time_ms = true;
	u->time_ms = ha_wall_ms();
	u->has_cpu_permille = true;
	u->cpu_permille = 0;
	if (prev->total && now.total > prev->total && now.busy >= prev->busy) {
		u->cpu_permille = (uint32_t)((now.busy - prev->busy) * 1000 /
					     (now.total - prev->total));
	}
	*prev = now;
	rc = ha_file_read("/proc/meminfo", 1 << 20, &mem, &len);
	if (rc == 0) {
		uint64_t total = meminfo_kib((const char *)mem, "MemTotal:");
		uint64_t avail = meminfo_kib((const char *)mem, "MemAvailable:");

		u->has_mem_avail_kib = true;
		u->mem_avail_kib = avail;
		u->has_mem_used_kib = true;
		u->mem_used_kib = total > avail ? total - avail : 0;
	}
	if (getloadavg(load, 1) == 1) {
		u->has_load1_centi = true;
		u->load1_centi = (uint32_t)(load[0] * 100.0);
	}
	return 0;
}
