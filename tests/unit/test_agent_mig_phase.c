/*
 * test_agent_mig_phase.c - the agent's migration phase table
 * (agent/agent_mig.c): the paths the agent takes (source, destination,
 * failures, a copy found at restart discarded and retried, a new
 * transaction) are walked step by step through agent_mig_phase_set();
 * steps the table does not have, and a step from a phase other than the
 * one expected, are refused and leave the phase as it was.
 */
#include <errno.h>
#include <string.h>

#include "agent_mig.h"
#include "harness.h"

/* Walks @steps from none; every step must be taken. */
static void walk(const enum agent_mig_phase *steps, size_t n)
{
	enum agent_mig_phase p = AGENT_MIG_NONE;

	for (size_t i = 0; i < n; i++) {
		CHECK_EQ_INT(agent_mig_phase_set(&p, p, steps[i], "g1", 7), 0);
		CHECK_EQ_INT(p, steps[i]);
	}
}

#define WALK(...)                                                              \
	do {                                                                   \
		const enum agent_mig_phase s_[] = { __VA_ARGS__ };             \
		walk(s_, sizeof(s_) / sizeof(s_[0]));                          \
	} while (0)

/* @from -> @to is refused: -EINVAL, the phase stays @from. */
static void refused(enum agent_mig_phase from, enum agent_mig_phase to)
{
	enum agent_mig_phase p = from;

	CHECK(!agent_mig_phase_ok(from, to));
	CHECK_EQ_INT(agent_mig_phase_set(&p, from, to, "g1", 7), -EINVAL);
	CHECK_EQ_INT(p, from);
}

int main(void)
{
	size_t legal = 0;

	/* source, committed: the copy here is discarded */
	WALK(AGENT_MIG_TRANSFERRING, AGENT_MIG_SENT, AGENT_MIG_FINISHING, AGENT_MIG_FINISHED);
	/* destination, committed; then a new transaction */
	WALK(AGENT_MIG_TRANSFERRING, AGENT_MIG_RECEIVED, AGENT_MIG_FINISHING, AGENT_MIG_FINISHED,
	     AGENT_MIG_NONE, AGENT_MIG_TRANSFERRING);
	/* the transfer fails, the abort finishes it; the finish is retried */
	WALK(AGENT_MIG_TRANSFERRING, AGENT_MIG_FAILED, AGENT_MIG_FINISHING, AGENT_MIG_FINISHING,
	     AGENT_MIG_FINISHED);
	/* the destination refuses at once (watchdog, no listener) */
	WALK(AGENT_MIG_FAILED, AGENT_MIG_FINISHED);
	/* a copy found at restart: reported failed, discarded, the discard
	 * retried after a failed finish */
	WALK(AGENT_MIG_FAILED, AGENT_MIG_FINISHING, AGENT_MIG_FINISHED, AGENT_MIG_FINISHING,
	     AGENT_MIG_FINISHED);
	WALK(AGENT_MIG_FINISHING, AGENT_MIG_FINISHED);
	/* a new transaction starts from none whatever the last phase */
	for (int p = 0; p < AGENT_MIG_PHASE_MAX; p++) {
		CHECK(agent_mig_phase_ok((enum agent_mig_phase)p, AGENT_MIG_NONE));
	}

	/* what the table refuses */
	refused(AGENT_MIG_FINISHED, AGENT_MIG_TRANSFERRING);
	refused(AGENT_MIG_FINISHED, AGENT_MIG_FAILED);
	refused(AGENT_MIG_NONE, AGENT_MIG_SENT);
	refused(AGENT_MIG_NONE, AGENT_MIG_RECEIVED);
	refused(AGENT_MIG_NONE, AGENT_MIG_FINISHED);
	refused(AGENT_MIG_SENT, AGENT_MIG_RECEIVED);
	refused(AGENT_MIG_RECEIVED, AGENT_MIG_SENT);
	refused(AGENT_MIG_SENT, AGENT_MIG_TRANSFERRING);
	refused(AGENT_MIG_SENT, AGENT_MIG_FAILED);
	refused(AGENT_MIG_FAILED, AGENT_MIG_TRANSFERRING);
	refused(AGENT_MIG_FINISHING, AGENT_MIG_TRANSFERRING);
	refused(AGENT_MIG_FINISHING, AGENT_MIG_FAILED);
	refused(AGENT_MIG_TRANSFERRING, AGENT_MIG_TRANSFERRING);
	refused(AGENT_MIG_NONE, AGENT_MIG_PHASE_MAX);
	refused(AGENT_MIG_PHASE_MAX, AGENT_MIG_NONE);

	/* a step from a phase other than the one expected is refused */
	{
		enum agent_mig_phase p = AGENT_MIG_SENT;

		CHECK(agent_mig_phase_ok(AGENT_MIG_TRANSFERRING, AGENT_MIG_FAILED));
		CHECK_EQ_INT(agent_mig_phase_set(&p, AGENT_MIG_TRANSFERRING, AGENT_MIG_FAILED,
						 "g1", 7), -EINVAL);
		CHECK_EQ_INT(p, AGENT_MIG_SENT);
	}

	/* the table as a whole: 24 steps (a changed table changes this
	 * test on purpose) */
	for (int f = 0; f < AGENT_MIG_PHASE_MAX; f++) {
		for (int t = 0; t < AGENT_MIG_PHASE_MAX; t++) {
			legal += agent_mig_phase_ok((enum agent_mig_phase)f, (enum agent_mig_phase)t);
		}
	}
	CHECK_EQ_INT(legal, 24);

	/* the names are the protocol's */
	CHECK(strcmp(agent_mig_phase_str(AGENT_MIG_RECEIVED), "received") == 0);
	CHECK(strcmp(agent_mig_phase_str(AGENT_MIG_NONE), "none") == 0);
	CHECK(strcmp(agent_mig_phase_str(AGENT_MIG_PHASE_MAX), "unknown") == 0);
	return ha_test_done("test_agent_mig_phase");
}
