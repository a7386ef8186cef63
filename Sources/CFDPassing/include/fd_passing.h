#ifndef MALVVM_FD_PASSING_H
#define MALVVM_FD_PASSING_H

#include <stddef.h>
#include <sys/types.h>

/// The most descriptors one message carries.
#define FDPASS_MAX_FDS 64

/// sendmsg(2) of one message with `count` descriptors as SCM_RIGHTS (MSG_NOSIGNAL: a peer that
/// went away is an EPIPE, not a signal). Returns bytes sent or -errno.
ssize_t fdpass_send(int socket, const void *bytes, size_t length, const int *fds, int count);

/// recvmsg(2) of one message, its descriptors received close-on-exec into `fds` (at most
/// `capacity`; *count says how many). A message whose descriptors did not all fit, or that was
/// truncated, has every descriptor it brought closed and returns -EMSGSIZE. Returns the
/// message's length, 0 at end of stream, or -errno.
ssize_t fdpass_receive(int socket, void *bytes, size_t capacity, int *fds, int fd_capacity, int *count);

/// accept4(2) with SOCK_CLOEXEC (accept4 needs _GNU_SOURCE, which Swift's Glibc module does
/// not define): a new, blocking descriptor, or -errno.
int fdpass_accept(int listening_fd);

#endif
