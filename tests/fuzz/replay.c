/*
 * replay.c - runs a libFuzzer target over files, as an ordinary test
 * (systemd's fuzz-main.c). Each argument is a file or a directory, walked
 * recursively in name order; every file is one input. Arguments that start
 * with '-' are libFuzzer options and are ignored, so a command line written
 * for the fuzzer also works here.
 *
 * Exit status: 0 when every input ran; 1 when an argument is missing, a
 * directory holds no input at all, or a file cannot be read. A failing
 * input aborts inside the target (the sanitizers report it).
 *
 * Each input is copied into a buffer of exactly its size, so that ASan
 * catches a read one byte past the end, as under libFuzzer.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

/* Weak: most targets do not define it. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Far above any seed; a bigger file is a mistake in the corpus. */
#define REPLAY_MAX_INPUT (64u * 1024u * 1024u)

static unsigned long n_inputs;

static int read_input(const char *path, uint8_t **data, size_t *size)
{
	struct stat st;
	uint8_t *p;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		return -errno;
	}
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size > REPLAY_MAX_INPUT) {
		close(fd);
		return -EFBIG;
	}
	/* malloc(0) may return NULL; libFuzzer never passes NULL. */
	p = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (p == NULL) {
		close(fd);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, p + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			int e = n < 0 ? -errno : -EIO;

			free(p);
			close(fd);
			return e;
		}
		got += (size_t)n;
	}
	close(fd);
	*data = p;
	*size = got;
	return 0;
}

static int run_file(const char *path)
{
	uint8_t *data = NULL;
	size_t size = 0;
	int rc = read_input(path, &data, &size);

	if (rc < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(-rc));
		return rc;
	}
	LLVMFuzzerTestOneInput(data, size);
	free(data);
	n_inputs++;
	return 0;
}

static int skip_entry(const struct dirent *e)
{
	/* ".", "..", and dot files such as .gitkeep are not inputs. */
	return e->d_name[0] != '.';
}

static int run_path(const char *path);

static int run_dir(const char *path)
{
	struct dirent **list;
	unsigned long before = n_inputs;
	int n = scandir(path, &list, skip_entry, alphasort);
	int rc = 0;

	if (n < 0) {
		rc = -errno;
		fprintf(stderr, "replay: %s: %s\n", path, strerror(-rc));
		return rc;
	}
	for (int i = 0; i < n; i++) {
		char sub[4096];

		if (rc == 0) {
			if (snprintf(sub, sizeof(sub), "%s/%s", path,
				     list[i]->d_name) >= (int)sizeof(sub)) {
				fprintf(stderr, "replay: %s/%s: name too long\n",
					path, list[i]->d_name);
				rc = -ENAMETOOLONG;
			} else {
				rc = run_path(sub);
			}
		}
		free(list[i]);
	}
	free(list);
	if (rc == 0 && n_inputs == before) {
		fprintf(stderr, "replay: %s: no inputs\n", path);
		rc = -ENOENT;
	}
	return rc;
}

static int run_path(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		int e = errno;

		fprintf(stderr, "replay: %s: %s\n", path, strerror(e));
		return -e;
	}
	if (S_ISDIR(st.st_mode)) {
		return run_dir(path);
	}
	return run_file(path);
}

int main(int argc, char **argv)
{
	int paths = 0;

	if (LLVMFuzzerInitialize) {
		LLVMFuzzerInitialize(&argc, &argv);
	}
	for (int i = 1; i < argc; i++) {
		if (argv[i][0] == '-') {
			continue;
		}
		paths++;
		if (run_path(argv[i]) < 0) {
			return 1;
		}
	}
	if (paths == 0) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 1;
	}
	printf("%s: %lu inputs ran\n", argv[0], n_inputs);
	return 0;
}
