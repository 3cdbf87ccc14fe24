{
  "targets": [
    {
      "target_name": "notify",
      "sources": ["notify.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "libraries": ["-lsystemd"]
    }
  ]
}
