/**
 * @file kd_list.h
 * @brief The steps of the intrusive linked lists every program keeps: append to a queue with
 * a tail pointer, unlink from a singly- or doubly-linked list, free a whole list.
 *
 * Macros, not functions, because the lists are intrusive: the nodes are the modules' own
 * structs, and their link fields are named per list (next, hnext, next_announce ...), so
 * one node can sit in several lists at once. Each argument is an lvalue without side
 * effects (it may be evaluated more than once); `head`, `tail` and `first` are assigned.
 * They need GNU C's __typeof__ (the build's C17 has the GNU extensions on).
 */
#ifndef KD_LIST_H
#define KD_LIST_H

#include <stdlib.h>
#include <string.h>

/** Appends node to the queue head..tail linked through its field `next` (node->next is
 * set to NULL: it is the new last). */
#define KD_SLIST_APPEND(head, tail, node, next)                                                    \
    do {                                                                                           \
        (node)->next = NULL;                                                                       \
        if (tail)                                                                                  \
            (tail)->next = (node);                                                                 \
        else                                                                                       \
            (head) = (node);                                                                       \
        (tail) = (node);                                                                           \
    } while (0)

/** Unlinks node from the singly-linked list starting at `first` (linked through `next`);
 * nothing happens when node is not on it. node->next is left as it was. */
#define KD_SLIST_UNLINK(first, node, next)                                                         \
    do {                                                                                           \
        __typeof__(node) *kd_pp_ = &(first);                                                       \
        while (*kd_pp_ && *kd_pp_ != (node))                                                       \
            kd_pp_ = &(*kd_pp_)->next;                                                             \
        if (*kd_pp_)                                                                               \
            *kd_pp_ = (node)->next;                                                                \
    } while (0)

/** Unlinks node from the doubly-linked list starting at `head` (linked through `prev` and
 * `next`) and clears its two links. A node with no prev that is not the head is on no list:
 * the head stays. */
#define KD_DLIST_UNLINK(head, node, prev, next)                                                    \
    do {                                                                                           \
        if ((node)->prev)                                                                          \
            (node)->prev->next = (node)->next;                                                     \
        else if ((head) == (node))                                                                 \
            (head) = (node)->next;                                                                 \
        if ((node)->next)                                                                          \
            (node)->next->prev = (node)->prev;                                                     \
        (node)->next = (node)->prev = NULL;                                                        \
    } while (0)

/** Frees every node of the list starting at `head` (linked through `next`, each node one
 * malloc'ed block) and leaves head NULL. */
#define KD_SLIST_FREE(head, next)                                                                  \
    do {                                                                                           \
        while (head) {                                                                             \
            __typeof__(head) kd_n_ = (head);                                                       \
            (head) = kd_n_->next;                                                                  \
            free(kd_n_);                                                                           \
        }                                                                                          \
    } while (0)

/** Nodes freed and kept for reuse (a free list through the field `next`, `count` long).
 * Why: a struct above 1 KiB, or made in clumps of more than 7, passes glibc's per-thread cache
 * and costs a walk of malloc's bins at each calloc and free; the worker makes a few per job
 * (issue 17). Under AddressSanitizer nothing is kept, so that a use after free is still
 * caught. */
#if defined(__SANITIZE_ADDRESS__)
#define KD_SPARE_MAX(n) 0
#else
#define KD_SPARE_MAX(n) (n)
#endif

/** out = a node kept by KD_SPARE_GIVE, zeroed, or a new zeroed one (NULL: out of memory). */
#define KD_SPARE_TAKE(list, count, next, out)                                                      \
    do {                                                                                           \
        if (((out) = (list))) {                                                                    \
            (list) = (out)->next;                                                                  \
            (count)--;                                                                             \
            memset((out), 0, sizeof *(out));                                                       \
        } else {                                                                                   \
            (out) = calloc(1, sizeof *(out));                                                      \
        }                                                                                          \
    } while (0)

/** Gives node back: kept while fewer than KD_SPARE_MAX(max) are, freed otherwise. */
#define KD_SPARE_GIVE(list, count, max, next, node)                                                \
    do {                                                                                           \
        if ((count) < KD_SPARE_MAX(max)) {                                                         \
            (node)->next = (list);                                                                 \
            (list) = (node);                                                                       \
            (count)++;                                                                             \
        } else {                                                                                   \
            free(node);                                                                            \
        }                                                                                          \
    } while (0)

#endif
