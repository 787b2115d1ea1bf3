/*
 * fuzz_config.c - hactl.conf parser against arbitrary files.
 *
 * The input is written to an anonymous memory file (a temporary file where
 * memfd_create is missing) and loaded with ha_config_load(). Invariants,
 * any violation aborts:
 *
 *  - The result is 0 or -EINVAL.
 *  - On -EINVAL the message is "PATH:LINE: what" with 1 <= LINE <= the
 *    number of lines in the input.
 *  - On success every value is within its option's bounds: numbers in
 *    min..max, log levels known, strings terminated within their field.
 *  - What ha_config_print() writes loads back to the same values, unless a
 *    value starts with ';' (printed after "= ", it reads as a comment) or a
 *    printed line is longer than a line may be.
 */
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"
#include "util.h"

#define FUZZ_ASSERT(cond)                                                      \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: invariant violated: %s\n",     \
				__FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

struct memfile {
	int fd;
	char path[64];
	char tmp[64]; /* the name to unlink, when not a memfd */
};

static int memfile_open(struct memfile *m, const uint8_t *data, size_t size)
{
	size_t off = 0;

	m->tmp[0] = 0;
	m->fd = memfd_create("fuzz-config", MFD_CLOEXEC);
	if (m->fd >= 0) {
		snprintf(m->path, sizeof(m->path), "/proc/self/fd/%d", m->fd);
		if (access(m->path, R_OK) < 0) { /* no /proc */
			close(m->fd);
			m->fd = -1;
		}
	}
	if (m->fd < 0) {
		snprintf(m->tmp, sizeof(m->tmp), "/tmp/fuzz-config.XXXXXX");
		m->fd = mkstemp(m->tmp);
		if (m->fd < 0) {
			m->tmp[0] = 0;
			return -EIO;
		}
		snprintf(m->path, sizeof(m->path), "%s", m->tmp);
	}
	while (off < size) {
		ssize_t n = write(m->fd, data + off, size - off);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return -EIO;
		}
		off += (size_t)n;
	}
	return 0;
}

static void memfile_close(struct memfile *m)
{
	if (m->fd >= 0) {
		close(m->fd);
	}
	if (m->tmp[0]) {
		unlink(m->tmp);
	}
}

static void check_values(const struct ha_config *cfg)
{
	for (const struct ha_opt *o = ha_config_options(); o->name; o++) {
		const char *p = (const char *)cfg + o->offset;

		switch (o->type) {
		case HA_OPT_STR:
			FUZZ_ASSERT(strnlen(p, o->size) <= o->max);
			FUZZ_ASSERT(o->max < o->size);
			break;
		case HA_OPT_UINT:
			FUZZ_ASSERT(*(const uint32_t *)p >= o->min);
			FUZZ_ASSERT(*(const uint32_t *)p <= o->max);
			break;
		case HA_OPT_LOGLEVEL:
			FUZZ_ASSERT(strnlen(p, o->size) < o->size);
			FUZZ_ASSERT(ha_log_priority_parse(p) >= 0);
			break;
		case HA_OPT_BOOL:
			FUZZ_ASSERT(*(const uint8_t *)p <= 1);
			break;
		case HA_OPT_CHOICE:
			FUZZ_ASSERT(strnlen(p, o->size) <= o->max);
			FUZZ_ASSERT(strstr(o->choices, p) != NULL && p[0] != 0);
			break;
		case HA_OPT_NET: {
			struct ha_net net;

			FUZZ_ASSERT(strnlen(p, o->size) <= o->max);
			FUZZ_ASSERT(p[0] == 0 || ha_net_parse(p, &net) == 0);
			break;
		}
		case HA_OPT_LISTEN: {
			struct ha_listen l;

			FUZZ_ASSERT(strnlen(p, o->size) <= o->max);
			FUZZ_ASSERT(p[0] == 0 || (ha_listen_parse(p, &l) == 0 && l.port != 0));
			break;
		}
		default:
			FUZZ_ASSERT(!"option of unknown type");
		}
	}
}

static int same_values(const struct ha_config *a, const struct ha_config *b)
{
	for (const struct ha_opt *o = ha_config_options(); o->name; o++) {
		const char *pa = (const char *)a + o->offset;
		const char *pb = (const char *)b + o->offset;

		if (o->type == HA_OPT_UINT) {
			if (*(const uint32_t *)pa != *(const uint32_t *)pb) {
				return 0;
			}
		} else if (o->type == HA_OPT_BOOL) {
			if (*(const bool *)pa != *(const bool *)pb) {
				return 0;
			}
		} else if (strcmp(pa, pb) != 0) {
			return 0;
		}
	}
	return 1;
}

static int printable_as_ini(const struct ha_config *cfg, const char *text,
			    size_t max_line)
{
	const char *line = text;

	for (const struct ha_opt *o = ha_config_options(); o->name; o++) {
		if (o->type != HA_OPT_UINT && o->type != HA_OPT_BOOL &&
		    ((const char *)cfg + o->offset)[0] == ';') {
			return 0;
		}
	}
	while (*line) {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);

		if (n > max_line) {
			return 0;
		}
		line += n + (nl != NULL);
	}
	return 1;
}

static size_t count_lines(const uint8_t *data, size_t size)
{
	size_t n = 0;

	for (size_t i = 0; i < size; i++) {
		n += data[i] == '\n';
	}
	return n + (size > 0 && data[size - 1] != '\n');
}

static void check_reprint(const struct ha_config *cfg)
{
	struct ha_config again;
	struct memfile m;
	char err[1024];
	char *text = NULL;
	size_t text_len = 0;
	FILE *out = open_memstream(&text, &text_len);
	int rc;

	if (out == NULL) {
		return;
	}
	ha_config_print(cfg, out);
	fclose(out);
	/* libinih's line buffer holds INI_MAX_LINE - 1 characters. */
	if (printable_as_ini(cfg, text, INI_MAX_LINE - 1) &&
	    memfile_open(&m, (const uint8_t *)text, text_len) == 0) {
		rc = ha_config_load(m.path, false, &again, err, sizeof(err));
		if (rc != 0) {
			fprintf(stderr, "reload: %s\n", err);
		}
		FUZZ_ASSERT(rc == 0);
		FUZZ_ASSERT(same_values(cfg, &again));
		memfile_close(&m);
	}
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ha_config cfg;
	struct memfile m;
	char err[1024];
	size_t plen;
	unsigned long line;
	char *end;
	int rc;

	if (size > 64 * 1024) { /* nothing new to learn from big files */
		return 0;
	}
	if (memfile_open(&m, data, size) < 0) {
		memfile_close(&m);
		return 0;
	}
	err[0] = 0;
	rc = ha_config_load(m.path, false, &cfg, err, sizeof(err));
	if (rc == 0) {
		check_values(&cfg);
		check_reprint(&cfg);
	} else {
		FUZZ_ASSERT(rc == -EINVAL);
		plen = strlen(m.path);
		FUZZ_ASSERT(strncmp(err, m.path, plen) == 0 && err[plen] == ':');
		line = strtoul(err + plen + 1, &end, 10);
		FUZZ_ASSERT(end != err + plen + 1 && end[0] == ':' && end[1] == ' ');
		FUZZ_ASSERT(end[2] != 0);
		FUZZ_ASSERT(line >= 1 && line <= count_lines(data, size));
	}
	memfile_close(&m);
	return 0;
}
