/*
 * ha_driver_test.c - drives one guest driver directly, without the
 * cluster, for the driver tests and for debugging.
 *
 *   ha-driver-test TYPE ACTION [options]
 *     TYPE    container | domain
 *     ACTION  start | stop | attach | state | usage | destroy |
 *             checkpoint DIR | checkpoint-leave DIR | restore DIR | probe
 *   options: --name N --mem SIZE_KIB --cpus N --cpu-weight N --cpu-limit PCT
 *            --pids N --rootfs DIR --kernel F --initrd F --disk F
 *            --cmd "PROG ARGS" --ip CIDR --gw IP --bridge BR
 *            --run-dir DIR --data-dir DIR --timeout MS
 *            --criu PATH --qemu PATH
 *
 * Each action is a fresh process: state carries over only through what the
 * driver keeps in its run directory (which is what attach() relies on).
 * Prints one line; exit 0 on success, 1 on failure, 2 on bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "agent_facts.h"
#include "driver.h"
#include "util.h"

static int need_guest(const struct agent_driver_ops *ops, struct agent_driver *d,
		      const struct agent_guest_spec *spec, struct agent_guest **g,
		      char *err)
{
	int rc = ops->attach(d, spec, g, err);

	if (rc == -ESRCH) {
		rc = ops->create(d, spec, g, err);
	}
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "mem", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "cpu-weight", required_argument, NULL, 'w' },
		{ "cpu-limit", required_argument, NULL, 'l' },
		{ "pids", required_argument, NULL, 'p' },
		{ "rootfs", required_argument, NULL, 'r' },
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "disk", required_argument, NULL, 'D' },
		{ "cmd", required_argument, NULL, 'C' },
		{ "ip", required_argument, NULL, 'I' },
		{ "gw", required_argument, NULL, 'G' },
		{ "bridge", required_argument, NULL, 'b' },
		{ "run-dir", required_argument, NULL, 'R' },
		{ "data-dir", required_argument, NULL, 'A' },
		{ "timeout", required_argument, NULL, 't' },
		{ "criu", required_argument, NULL, 'X' },
		{ "qemu", required_argument, NULL, 'Q' },
		{ 0 },
	};
	struct agent_guest_spec spec = { .name = "test", .mem_kib = 131072, .cpus = 1,
					 .cpu_weight = 1000 };
	struct ha_config cfg;
	struct agent_driver d = { .cfg = &cfg };
	const struct agent_driver_ops *ops;
	struct agent_guest *g = NULL;
	char err[AGENT_ERR_LEN] = "";
	uint32_t timeout = 60000;
	const char *action, *dir = NULL;
	int opt, rc;

	ha_config_defaults(&cfg);
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'n': spec.name = optarg; break;
		case 'm': spec.mem_kib = strtoull(optarg, NULL, 10); break;
		case 'c': spec.cpus = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'w': spec.cpu_weight = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'l': spec.cpu_limit_pct = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'p': spec.pids_max = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'r': spec.rootfs = optarg; break;
		case 'k': spec.kernel = optarg; break;
		case 'i': spec.initrd = optarg; break;
		case 'D': spec.disk = optarg; break;
		case 'C': spec.command = optarg; break;
		case 'I': spec.ip = optarg; break;
		case 'G': spec.gateway = optarg; break;
		case 'b': spec.bridge = optarg; break;
		case 'R': spec.run_dir = optarg; break;
		case 'A': spec.data_dir = optarg; break;
		case 't': timeout = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'X': snprintf(cfg.criu_path, sizeof(cfg.criu_path), "%s", optarg); break;
		case 'Q': snprintf(cfg.qemu_path, sizeof(cfg.qemu_path), "%s", optarg); break;
		default: return 2;
		}
	}
	if (argc - optind < 2) {
		fprintf(stderr, "usage: ha-driver-test TYPE ACTION [DIR] [options]\n");
		return 2;
	}
	spec.type = argv[optind];
	action = argv[optind + 1];
	if (argc - optind > 2) {
		dir = argv[optind + 2];
	}
	ops = agent_driver_find(spec.type);
	if (ops == NULL) {
		fprintf(stderr, "no driver for type '%s' in this build\n", spec.type);
		return 2;
	}
	d.ops = ops;

	if (strcmp(action, "probe") == 0) {
		Hactl__HostFacts f = HACTL__HOST_FACTS__INIT;

		rc = ops->probe(&d, &f);
		printf("probe: %d criu=%s lazy=%d dirty_track=%d kvm_usable=%d\n", rc,
		       f.criu_version ? f.criu_version : "-", f.criu_lazy_pages,
		       f.criu_mem_dirty_track, f.kvm_usable);
		agent_facts_clear(&f);
		return rc < 0;
	}
	if (strcmp(action, "restore") == 0) {
		if (dir == NULL) {
			return 2;
		}
		rc = ops->restore(&d, &spec, dir, &g, err);
	} else if (strcmp(action, "attach") == 0) {
		rc = ops->attach(&d, &spec, &g, err);
	} else {
		rc = need_guest(ops, &d, &spec, &g, err);
		if (rc == 0) {
			if (strcmp(action, "start") == 0) {
				rc = ops->start(g, timeout, err);
			} else if (strcmp(action, "stop") == 0) {
				rc = ops->stop(g, timeout, err);
			} else if (strcmp(action, "destroy") == 0) {
				rc = ops->destroy(g, err);
			} else if (strcmp(action, "state") == 0) {
				rc = 0;
			} else if (strcmp(action, "usage") == 0) {
				struct agent_guest_usage u = { 0 };

				rc = ops->usage(g, &u);
				if (rc == 0) {
					printf("usage: cpu_ns=%llu mem_bytes=%llu pids=%u\n",
					       (unsigned long long)u.cpu_ns,
					       (unsigned long long)u.mem_bytes, u.pids);
				}
			} else if (strcmp(action, "checkpoint") == 0 ||
				   strcmp(action, "checkpoint-leave") == 0) {
				unsigned flags = strcmp(action, "checkpoint-leave") == 0 ?
					AGENT_CKPT_LEAVE_RUNNING : 0;

				rc = dir ? ops->checkpoint(g, dir, flags, err) : -EINVAL;
			} else {
				fprintf(stderr, "unknown action '%s'\n", action);
				return 2;
			}
		}
	}
	printf("%s %s: %s%s%s (state %s)\n", spec.type, action,
	       rc == 0 ? "ok" : strerror(-rc), err[0] ? ": " : "", err,
	       g ? agent_guest_state_str(ops->state(g)) : "none");
	if (g) {
		ops->guest_free(g);
	}
	return rc == 0 ? 0 : 1;
}
