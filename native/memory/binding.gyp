{
  "targets": [
    {
      "target_name": "memory",
      "sources": ["memory.cc"],
      "cflags_cc": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
