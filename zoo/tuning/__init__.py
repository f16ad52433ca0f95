"""Parameter-efficient tuning families built in zoo (those peft does not provide), one folder each."""
