/* kft_port: a free TCP port on loopback for a server a test starts.
 *
 * Binding port 0 and closing it hands out a port of the kernel's ephemeral
 * range (net.ipv4.ip_local_port_range), which any outgoing connection may
 * take between the check and the server's bind ("address already in use").
 * kft_free_port() draws below that range instead, checks the port can be
 * bound, and never hands the same port out twice in one process.  No Check
 * dependency: the benchmarks use it too. */
#pragma once

/* A port, or -1 (errno set) when none was found. */
int kft_free_port(void);
