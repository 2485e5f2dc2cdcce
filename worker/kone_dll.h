/* kone_dll.h: kk_dll_detach, the one step every KONE layer takes on an lws_dll2 link that
 * may or may not be on a list (a job's wait, a site's or subscription's write queue). */
#ifndef KD_KONE_DLL_H
#define KD_KONE_DLL_H

#include <libwebsockets.h>

/* Takes d off its list when it is on one. lws_dll2_remove happens to accept a detached link
 * in lws 4.1, but its header promises nothing, so the check stays (in one place). */
static inline void kk_dll_detach(struct lws_dll2 *d)
{
    if (!lws_dll2_is_detached(d))
        lws_dll2_remove(d);
}

#endif
