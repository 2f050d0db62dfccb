from tdlab.cli import app

app(prog_name="tdlab")
