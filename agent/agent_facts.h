/*
 * agent_facts.h - what the agent finds out about its host.
 */
#ifndef HA_AGENT_FACTS_H
#define HA_AGENT_FACTS_H

#include <stdint.h>

#include "proto/hactl.pb-c.h"

struct agent_probe_opts {
	const char *criu_path;
	const char *qemu_path;
	uint32_t timeout_ms; /* per external command / KVM trial */
};

/*
 * Fills @f (initialised by the caller) with facts; string fields are
 * malloc'd, freed with agent_facts_clear(). Never fails: what cannot be
 * probed is reported absent.
 */
void agent_facts_probe(const struct agent_probe_opts *o, Hactl__HostFacts *f);
void agent_facts_clear(Hactl__HostFacts *f);

/* CPU counters between two usage samples. */
struct agent_cpu_sample {
	uint64_t busy;
	uint64_t total;
};

/*
 * Samples host usage into @u; @prev holds the previous CPU counters and is
 * updated (cpu_permille is 0 on the first call). Returns 0 or -errno.
 */
int agent_usage_sample(struct agent_cpu_sample *prev, Hactl__HostUsage *u);

/* Parses the first line of /proc/stat; exposed for tests. */
int agent_parse_proc_stat(const char *text, struct agent_cpu_sample *out);
/* Parses "Version: X" from `criu --version`; exposed for tests. */
int agent_parse_criu_version(const char *text, char *out, size_t outlen);

#endif
