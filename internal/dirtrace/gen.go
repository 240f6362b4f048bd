package dirtrace

//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror -mcpu=v3 -D__TARGET_ARCH_x86" -target bpfel -type dw_event -type dw_key -type dw_op -type dw_flags dirwatch ../../bpf/dirwatch.bpf.c -- -I../../bpf/include
