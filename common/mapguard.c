/* common/mapguard.c: SIGBUS on a shrunken mapped input becomes zero pages plus a flag. */
#include "common/mapguard.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct guard_slot {
    uintptr_t begin, end; /* [begin, end); end == 0: free slot */
    char *name;           /* owned (qt_malloc) */
} guard_slot;

static guard_slot slots[QT_MAPGUARD_MAX];
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static bool handler_installed;
static uintptr_t page_size; /* read once, before the handler can run */
static char *tripped_name; /* the file of the first fault, NULL if none */
static volatile sig_atomic_t tripped;

/* The handler: inside a guarded mapping, map zero pages over the rest of it
 * and note the file; elsewhere, fall back to the default action. */
static void on_sigbus(int sig, siginfo_t *si, void *uctx)
{
    (void)uctx;
    uintptr_t a = (uintptr_t)si->si_addr;
    const uintptr_t page = page_size;
    for (size_t i = 0; i < QT_MAPGUARD_MAX; i++) {
        uintptr_t b = __atomic_load_n(&slots[i].begin, __ATOMIC_ACQUIRE);
        uintptr_t e = __atomic_load_n(&slots[i].end, __ATOMIC_ACQUIRE);
        if (!e || a < b || a >= e) continue;
        uintptr_t from = a & ~(page - 1);
        void *z = mmap((void *)from, e - from, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                       -1, 0);
        if (z == MAP_FAILED) break;
        char *expect = NULL;
        __atomic_compare_exchange_n(&tripped_name, &expect, slots[i].name, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE);
        tripped = 1;
        return; /* the faulting read runs again, on zeros */
    }
    signal(sig, SIG_DFL); /* not ours: the default action when the read runs again */
}

/* Installs the handler once (slots_lock held). */
static qt_status install_handler(void)
{
    if (handler_installed) return QT_OK;
    page_size = (uintptr_t)sysconf(_SC_PAGESIZE);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, NULL) != 0) return QT_ERR_IO;
    handler_installed = true;
    return QT_OK;
}

qt_status qt_mapguard_add(const void *base, size_t len, const char *name)
{
    if (!len) return QT_OK;
    char *copy = qt_strdup(name ? name : "?");
    if (!copy) return QT_ERR_NOMEM;
    qt_status st = QT_ERR_NOMEM;
    pthread_mutex_lock(&slots_lock);
    if (install_handler() != QT_OK) {
        st = QT_ERR_IO;
    } else {
        for (size_t i = 0; i < QT_MAPGUARD_MAX; i++) {
            if (slots[i].end) continue;
            slots[i].name = copy;
            __atomic_store_n(&slots[i].begin, (uintptr_t)base, __ATOMIC_RELEASE);
            __atomic_store_n(&slots[i].end, (uintptr_t)base + len, __ATOMIC_RELEASE);
            copy = NULL;
            st = QT_OK;
            break;
        }
    }
    pthread_mutex_unlock(&slots_lock);
    qt_free(copy);
    return st;
}

void qt_mapguard_remove(const void *base)
{
    pthread_mutex_lock(&slots_lock);
    for (size_t i = 0; i < QT_MAPGUARD_MAX; i++) {
        if (!slots[i].end || slots[i].begin != (uintptr_t)base) continue;
        __atomic_store_n(&slots[i].end, 0, __ATOMIC_RELEASE);
        __atomic_store_n(&slots[i].begin, 0, __ATOMIC_RELEASE);
        /* the name stays alive if it is the tripped one (qt_mapguard_tripped returns it) */
        if (slots[i].name != __atomic_load_n(&tripped_name, __ATOMIC_ACQUIRE)) qt_free(slots[i].name);
        slots[i].name = NULL;
        break;
    }
    pthread_mutex_unlock(&slots_lock);
}

bool qt_mapguard_tripped(const char **name)
{
    if (name) *name = __atomic_load_n(&tripped_name, __ATOMIC_ACQUIRE);
    return tripped != 0;
}

void qt_mapguard_clear(void)
{
    pthread_mutex_lock(&slots_lock);
    char *n = __atomic_exchange_n(&tripped_name, NULL, __ATOMIC_ACQ_REL);
    bool in_use = false;
    for (size_t i = 0; i < QT_MAPGUARD_MAX && n; i++) in_use = in_use || slots[i].name == n;
    if (!in_use) qt_free(n);
    tripped = 0;
    pthread_mutex_unlock(&slots_lock);
}
