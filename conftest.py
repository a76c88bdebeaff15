pytest_plugins = ["procure_devstack.pytest_plugin"]
