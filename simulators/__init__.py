"""qlite.simulators"""
