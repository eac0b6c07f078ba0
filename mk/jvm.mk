# JVM jars from Maven Central: the local Kafka broker and Spark's Kafka connector.
# Included from the top-level Makefile (or run alone: `make -f mk/jvm.mk jars` from the repo root).
#
#   make jars        copy both runtime classpaths (no-op when jars/*/.stamp is newer than the pom)
#   make clean-jars  remove jars/ (the ~/.m2 cache is kept, so the next `make jars` is fast)
#
# Each folder is filled in a temporary sibling and renamed at the end, so an interrupted run never
# leaves a half-filled folder behind a fresh stamp. MVN_FLAGS can add e.g. -Dmaven.repo.local=DIR.

MVN ?= mvn
MVN_FLAGS ?= -s $(CURDIR)/jvm/maven-settings.xml
JVM_POM_DIR := $(CURDIR)/jvm
JARS_DIR := $(CURDIR)/jars
JAR_STAMPS := $(JARS_DIR)/kafka/.stamp $(JARS_DIR)/spark/.stamp

.PHONY: jars clean-jars

jars: $(JAR_STAMPS)

$(JARS_DIR)/%/.stamp: $(JVM_POM_DIR)/%/pom.xml
	@echo "resolving $* jars with Maven -> $(JARS_DIR)/$*"
	@rm -rf "$(JARS_DIR)/$*.tmp"
	$(MVN) -q -B -Dstyle.color=never $(MVN_FLAGS) -f "$<" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$(JARS_DIR)/$*.tmp"
	@touch "$(JARS_DIR)/$*.tmp/.stamp"
	@rm -rf "$(JARS_DIR)/$*"
	@mv "$(JARS_DIR)/$*.tmp" "$(JARS_DIR)/$*"

clean-jars:
	rm -rf "$(JARS_DIR)"
