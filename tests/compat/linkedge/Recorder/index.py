import os


def handler(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(event.decode("utf-8") + "\n")
    return ''
