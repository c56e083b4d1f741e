/* SPDX-License-Identifier: MIT */
/* parleyd's entry point; the process itself is run by server.c. */
#include "daemon.h"

int main(int argc, char **argv)
{
    return daemon_main(argc, argv);
}
