ANSWER = 42  # installed by mpremote mip from a local package
