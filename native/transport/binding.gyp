{
  "targets": [
    {
      "target_name": "transport",
      "sources": ["transport.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
