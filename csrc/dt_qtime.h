/* Deadlines for the queues' timed waits, on the monotonic clock. */
#ifndef DT_QTIME_H
#define DT_QTIME_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

static inline void dt_deadline(struct timespec *ts, int64_t ns)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ns / 1000000000;
    ts->tv_nsec += ns % 1000000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* A condition variable that waits on the monotonic clock. */
static inline int dt_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    if (pthread_condattr_init(&a))
        return -1;
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
    return rc;
}

/* Wait until signalled or the deadline (NULL: none); nonzero on timeout. */
static inline int dt_cond_wait(pthread_cond_t *cv, pthread_mutex_t *m, const struct timespec *dl)
{
    return dl ? pthread_cond_timedwait(cv, m, dl) : pthread_cond_wait(cv, m);
}

static inline double dt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#endif
